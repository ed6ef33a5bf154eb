package firewall

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// With iptables-legacy, rules live in the kernel's x_tables, which notify
// no one of a change. The header of table filter (IPT_SO_GET_INFO and
// IP6T_SO_GET_INFO, one getsockopt each) holds its rule count, its size
// and where each built-in chain starts: any rule added, deleted or
// flushed changes it. The iptables backend records it after its own
// changes, and its cheap check compares.

// soGetInfo is IPT_SO_GET_INFO and IP6T_SO_GET_INFO.
const soGetInfo = 64

// xtInfo is struct ipt_getinfo (and ip6t_getinfo, the same layout).
type xtInfo struct {
	Name       [32]byte
	ValidHooks uint32
	HookEntry  [5]uint32
	Underflow  [5]uint32
	NumEntries uint32
	Size       uint32
}

// xtWatch reads the filter table's header of both families through raw
// sockets opened in the backend's namespace.
type xtWatch struct {
	fds  [2]int // AF_INET, AF_INET6
	seen [2]xtInfo
	ok   bool // seen is valid
}

// openXTWatch opens the sockets in the namespace at ns ("" = current).
func openXTWatch(ns string) (*xtWatch, error) {
	x := &xtWatch{fds: [2]int{-1, -1}}
	err := inNetNS(ns, func() error {
		for i, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			if err != nil {
				return err
			}
			x.fds[i] = fd
		}
		return nil
	})
	if err != nil {
		x.close()
		return nil, fmt.Errorf("opening raw sockets to read the x_tables header: %w", err)
	}
	return x, nil
}

// read returns the current headers.
func (x *xtWatch) read() ([2]xtInfo, error) {
	var out [2]xtInfo
	for i, level := range []int{unix.IPPROTO_IP, unix.IPPROTO_IPV6} {
		info := &out[i]
		copy(info.Name[:], iptTable)
		l := uint32(unsafe.Sizeof(*info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(x.fds[i]), uintptr(level), soGetInfo,
			uintptr(unsafe.Pointer(info)), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			return out, fmt.Errorf("reading the header of x_tables filter: %w", e)
		}
	}
	return out, nil
}

// snapshot records the headers as they are now (after the backend's own
// changes).
func (x *xtWatch) snapshot() {
	var err error
	x.seen, err = x.read()
	x.ok = err == nil
}

// changed reports whether a header differs from the snapshot.
func (x *xtWatch) changed() (bool, error) {
	cur, err := x.read()
	if err != nil {
		return true, err
	}
	return !x.ok || cur != x.seen, nil
}

func (x *xtWatch) close() {
	for _, fd := range x.fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
