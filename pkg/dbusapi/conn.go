package dbusapi

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// DefaultSystemBus is the system bus address when DBUS_SYSTEM_BUS_ADDRESS
// is unset.
const DefaultSystemBus = "unix:path=/run/dbus/system_bus_socket"

// ServiceConn is the daemon's connection to the system bus, over a socket
// it holds itself: Abort closes that socket, which ends any write blocked
// in it. (godbus's own Close waits for a blocked write to finish, and a
// write blocks for as long as the bus does not read from the daemon.)
type ServiceConn struct {
	*dbus.Conn
	sock net.Conn
}

// ConnectService connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS, a
// unix:path= or unix:abstract= address) and authenticates. No method
// reply larger than the bus's limit leaves the connection (guardReply). Other address
// kinds are dialled by godbus, and Abort then only closes.
func ConnectService() (*ServiceConn, error) {
	addr := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	if addr == "" {
		addr = DefaultSystemBus
	}
	path, ok := unixPath(addr)
	if !ok {
		c, err := dbus.ConnectSystemBus(dbus.WithOutgoingInterceptor(guardReply))
		if err != nil {
			return nil, fmt.Errorf("connecting to the system bus: %w", err)
		}
		return &ServiceConn{Conn: c}, nil
	}
	sock, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connecting to the system bus at %s: %w", addr, err)
	}
	// Authentication and Hello must not wait for ever on a bus that does
	// not answer.
	sock.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := dbus.NewConn(sock, dbus.WithOutgoingInterceptor(guardReply))
	if err == nil {
		if err = c.Auth(nil); err == nil {
			err = c.Hello()
		}
	}
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("connecting to the system bus at %s: %w", addr, err)
	}
	sock.SetDeadline(time.Time{})
	return &ServiceConn{Conn: c, sock: sock}, nil
}

// Abort closes the connection at once, even while a write is blocked in
// it.
func (c *ServiceConn) Abort() {
	if c.sock != nil {
		c.sock.Close()
	}
	go c.Conn.Close() // returns once a blocked write has failed
}

// unixPath returns the socket path of the first unix:path= or
// unix:abstract= address in addr (a ;-separated list).
func unixPath(addr string) (string, bool) {
	for _, a := range strings.Split(addr, ";") {
		kind, kvs, ok := strings.Cut(a, ":")
		if !ok || kind != "unix" {
			continue
		}
		for _, kv := range strings.Split(kvs, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "path":
				return unescape(v), true
			case "abstract":
				return "@" + unescape(v), true
			}
		}
	}
	return "", false
}

// unescape undoes the %XX escapes of a D-Bus address value.
func unescape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) {
			var x byte
			if _, err := fmt.Sscanf(v[i+1:i+3], "%02x", &x); err == nil {
				b.WriteByte(x)
				i += 2
				continue
			}
		}
		b.WriteByte(v[i])
	}
	return b.String()
}
