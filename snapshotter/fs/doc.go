// Package fs is the read-only FUSE filesystem of one lazily fetched layer,
// built from the layer's zTOC. It is the only package of socikit that
// imports go-fuse.
//
// The tree comes from the TOC alone: directories (parents the tar does not
// list are synthesized 0755 root:root), regular files, symlinks, hard links
// (one inode, its link count the number of names), character and block
// devices, fifos, modes with setuid/setgid/sticky, owners, modification
// times and SCHILY.xattr.* extended attributes. A later entry of the same
// name replaces an earlier one. Whiteouts follow overlayfs, as upstream
// SOCI presents them: ".wh.NAME" is shown as a character device 0/0 named
// NAME (unless the layer itself has an entry NAME), ".wh..wh..opq" is not
// shown and makes its directory answer trusted.overlay.opaque = "y"
// (WithOpaqueXattrs adds user.overlay.opaque). The layer mount can then be
// an overlayfs lowerdir as is.
//
// File contents come from a Reader of the layer's uncompressed tar stream
// (remote.Fetcher: spans fetched on demand, verified against their
// digests, cached on disk). The first read of each file reads the tar
// header(s) before its data and checks name, type, size, mode, owner,
// mtime and link name against the TOC entry, as upstream does. Any error
// is returned to the kernel as EIO (EINTR when the read was interrupted),
// logged once per file and kept for Err; wrong bytes are never served.
//
// Use:
//
//	f, err := fs.New(z, fetcher)
//	srv, err := f.Mount(mountpoint) // root; DirectMountStrict, allow_other
//	...
//	err = srv.Unmount()
//
// Tests drive the nodes without a mount through fusefs.NewNodeFS(f.Root(),
// f.Options()).
package fs
