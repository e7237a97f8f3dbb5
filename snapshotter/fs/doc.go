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
// FUSE passthrough (WithPassthrough): a regular file of at least a minimum
// size whose bytes are all local is opened with a backing file, a local
// file holding exactly its data that the ContentSource makes from verified
// spans (after the tar header check); the kernel then reads that file
// itself and no read reaches this process. Opens of an inode stay of one
// kind while any is open (the kernel fails a passthrough open next to a
// cached one), so a file opened before its bytes were local keeps reading
// through FUSE until every such open is closed. The first backing file of
// a mount is offered to the kernel once to learn whether it takes them
// (PassthroughErr says why not); when it does not, every read goes
// through FUSE. Stats counts reads and both kinds of opens.
//
// WithOpCounters counts the mount's FUSE requests by kind (LOOKUP,
// GETATTR, READ, READDIRPLUS, ...) with a latency histogram, in an
// OpCounters that several mounts may share (the daemon's /metrics and
// /fuse-ops).
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
