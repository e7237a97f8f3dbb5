package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/socikit/socikit/snapshotter/fdstore"
)

// runFDStore is "socikit-snapshotter fdstore SOCKET": the fd holder the
// daemon starts (in a session of its own) to keep its mounts' /dev/fuse
// descriptors across a crash (snapshotter/fdstore, [lazy] fd_store). It
// exits once it keeps nothing and the daemon has gone, or on SIGTERM
// (closing what it keeps: the mounts it kept end).
func runFDStore(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: socikit-snapshotter fdstore SOCKET")
	}
	sock := args[0]
	log.SetPrefix("socikit-snapshotter fdstore: ")
	if c, err := net.Dial("unixpacket", sock); err == nil {
		c.Close()
		return fmt.Errorf("a holder already serves %s", sock)
	}
	_ = os.Remove(sock) // a stale socket: nobody answers it
	old := syscall.Umask(0o077)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	syscall.Umask(old)
	if err != nil {
		return err
	}
	l.SetUnlinkOnClose(true)
	pidFile := sock + ".pid"
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintln(os.Getpid())), 0o600); err != nil {
		l.Close()
		return err
	}
	defer os.Remove(pidFile)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGHUP)
	log.Printf("serving %s (pid %d)", sock, os.Getpid())
	err = fdstore.Serve(ctx, l, fdstore.ServeOptions{})
	log.Printf("exiting: %v", err)
	return err
}
