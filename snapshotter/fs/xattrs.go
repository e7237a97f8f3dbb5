package fs

// Extended attributes of a layer without any.
//
// FUSE has no cache of extended attributes: every getxattr(2) of a file
// of the mount is a GETXATTR request. An overlayfs over the mount (a
// container's root filesystem) asks one for each lower regular file it
// looks up (trusted.overlay.metacopy) and each directory
// (trusted.overlay.origin), and exec(2) asks for security.capability:
// through overlayfs, a file opened for the first time cost a GETXATTR
// round trip as well as its READ (BenchmarkSmallFile,
// OpenReadClose/overlay-fresh in snapshotter/layer). In a layer where no
// entry has an extended attribute and no directory is opaque, Getxattr
// answers ENOSYS instead: the kernel then sends no GETXATTR again on the
// mount and answers EOPNOTSUPP itself, which overlayfs and the capability
// code take as "no such attribute", as they take ENODATA. Only the first
// request reaches the daemon. Listxattr still answers (an empty list):
// with ENOSYS, listxattr(2) would fail with EOPNOTSUPP where containerd's
// unpack lists nothing (tar --xattrs, cp -a and the differential tests
// list), and no lookup path sends LISTXATTR.

// anyXattr reports whether e or an entry under it has an extended
// attribute or is an opaque directory.
func anyXattr(e *entry) bool {
	if len(e.xattrs) > 0 || e.opaque {
		return true
	}
	for _, c := range e.kids {
		if anyXattr(c.e) {
			return true
		}
	}
	return false
}
