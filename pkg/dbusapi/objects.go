package dbusapi

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
)

// The object model: /org/jailkeeper carries Manager1's properties and the
// standard ObjectManager; each jail is an object under JailRoot with the
// interface JailInterface. A Manager that also implements Model gets it
// (the daemon's does); one that does not serves Manager1's methods only.
const (
	JailRoot      = dbus.ObjectPath("/org/jailkeeper/jail")
	JailInterface = "org.jailkeeper.Jail1"

	propsInterface   = "org.freedesktop.DBus.Properties"
	objMgrInterface  = "org.freedesktop.DBus.ObjectManager"
	introspectIface  = "org.freedesktop.DBus.Introspectable"
	errNameReadOnly  = "org.freedesktop.DBus.Error.PropertyReadOnly"
	errNameNoIface   = "org.freedesktop.DBus.Error.UnknownInterface"
	errNameNoProp    = "org.freedesktop.DBus.Error.UnknownProperty"
	errNameNoObject  = "org.freedesktop.DBus.Error.UnknownObject"
	defaultRefresh   = time.Second
	defaultCoalesce  = 250 * time.Millisecond
	permanentBanTime = -1
)

// JailInfo is what the object of one jail shows: its configuration and
// its counters. FindTime and BanTime are seconds; BanTime is -1 for
// permanent bans.
type JailInfo struct {
	Name            string
	Units           []string
	Filter          string // the filter's name; "" for a jail's own failregex
	Mode            string // the built-in filter's mode; "" for the default
	MaxRetry        uint32
	FindTime        int64
	BanTime         int64
	CurrentlyFailed uint32
	TotalFailed     uint32
	CurrentlyBanned uint32
	TotalBanned     uint32
}

// Model is what the object model reads from the daemon, from the model's
// own goroutine.
type Model interface {
	// Backend names the firewall backend in use.
	Backend() string
	// JailInfos describes every configured jail. It is called soon after
	// a ban change or a reload, and every 10 s.
	JailInfos() []JailInfo
	// FailureCounts returns each configured jail's CurrentlyFailed and
	// TotalFailed. It is called every second and must be cheap (no walk
	// over the bans).
	FailureCounts() map[string][2]uint32
}

// JailPath returns the object path of the jail named name: every byte
// outside [A-Za-z0-9] becomes _ and two lower-case hex digits ("my-jail"
// → my_2djail), as systemd escapes unit names in its object paths.
func JailPath(name string) dbus.ObjectPath {
	if name == "" {
		return JailRoot + "/_"
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return JailRoot + "/" + dbus.ObjectPath(b.String())
}

// objects publishes the model on the bus and keeps it current.
type objects struct {
	s   *Server
	m   Model
	tag chan struct{} // a nudge: something changed, refresh soon

	mu      sync.Mutex
	version string
	backend string
	jails   map[string]JailInfo // as last published
}

func (s *Server) exportObjects(m Model) error {
	o := &objects{s: s, m: m, tag: make(chan struct{}, 1), jails: map[string]JailInfo{}}
	conn := s.conn
	for _, e := range []struct {
		v     exported
		path  dbus.ObjectPath
		iface string
	}{
		{managerProps{o}, Path, propsInterface},
		{objectManager{o}, Path, objMgrInterface},
		{introspectable(managerXML), Path, introspectIface},
		{rootIntrospect{o}, JailRoot, introspectIface},
	} {
		if err := export(conn, e.v, e.path, e.iface); err != nil {
			return fmt.Errorf("exporting %s at %s: %w", e.iface, e.path, err)
		}
	}
	o.backend = m.Backend()
	s.objs = o
	o.refresh() // the first jails, before the name is taken: no signals yet
	go o.loop(defaultRefresh, defaultCoalesce)
	return nil
}

// touch asks the model for a refresh soon (a ban changed, a reload).
func (s *Server) touch() {
	if s.objs == nil {
		return
	}
	select {
	case s.objs.tag <- struct{}{}:
	default:
	}
}

// SetVersion sets the Version property of Manager1.
func (s *Server) SetVersion(v string) {
	if s.objs == nil {
		return
	}
	s.objs.mu.Lock()
	s.objs.version = v
	s.objs.mu.Unlock()
}

// loop reads the failure counters every period, and everything soon
// after each nudge (a ban change, a reload), every fullEvery periods, and
// whenever the counters name other jails than those published (a reload
// by SIGHUP); at most once per coalesce, so a burst of bans becomes one
// PropertiesChanged per jail.
func (o *objects) loop(period, coalesce time.Duration) {
	const fullEvery = 10
	done := o.s.conn.Context().Done()
	t := time.NewTicker(period)
	defer t.Stop()
	ticks := 0
	for {
		full := false
		select {
		case <-done:
			return
		case <-t.C:
			ticks++
			full = ticks%fullEvery == 0
		case <-o.tag:
			full = true
		}
		if full || !o.refreshFailures() {
			o.refresh()
		}
		select {
		case <-done:
			return
		case <-time.After(coalesce):
		}
	}
}

// refreshFailures publishes the failure counters alone. It reports false,
// doing nothing, when they name other jails than those published.
func (o *objects) refreshFailures() bool {
	fc := o.m.FailureCounts()
	o.mu.Lock()
	if len(fc) != len(o.jails) {
		o.mu.Unlock()
		return false
	}
	infos := make([]JailInfo, 0, len(o.jails))
	for name, ji := range o.jails {
		c, ok := fc[name]
		if !ok {
			o.mu.Unlock()
			return false
		}
		ji.CurrentlyFailed, ji.TotalFailed = c[0], c[1]
		infos = append(infos, ji)
	}
	backend := o.backend
	o.mu.Unlock()
	o.publish(infos, backend)
	return true
}

// refresh reads the whole model and publishes it.
func (o *objects) refresh() {
	o.publish(o.m.JailInfos(), o.m.Backend())
}

// publish exports jails that appeared, unexports those gone, and emits
// what changed. Only loop (and exportObjects before it) calls it.
func (o *objects) publish(infos []JailInfo, backend string) {
	now := make(map[string]JailInfo, len(infos))
	for _, ji := range infos {
		now[ji.Name] = ji
	}
	o.mu.Lock()
	old := o.jails
	oldBackend := o.backend
	o.jails, o.backend = now, backend
	o.mu.Unlock()

	conn := o.s.conn
	var added, removed []string
	for name, ji := range now {
		prev, ok := old[name]
		if !ok {
			added = append(added, name)
			p := JailPath(name)
			export(conn, jailMethods{o, name}, p, JailInterface)
			export(conn, jailProps{o, name}, p, propsInterface)
			export(conn, introspectable(jailXML), p, introspectIface)
			conn.Emit(Path, objMgrInterface+".InterfacesAdded", p, map[string]map[string]dbus.Variant{JailInterface: jailVariants(ji)})
			continue
		}
		if ch := jailChanges(prev, ji); len(ch) > 0 {
			conn.Emit(JailPath(name), propsInterface+".PropertiesChanged", JailInterface, ch, []string{})
		}
	}
	for name := range old {
		if _, ok := now[name]; !ok {
			removed = append(removed, name)
			p := JailPath(name)
			export(conn, nil, p, JailInterface)
			export(conn, nil, p, propsInterface)
			export(conn, nil, p, introspectIface)
			conn.Emit(Path, objMgrInterface+".InterfacesRemoved", p, []string{JailInterface, propsInterface, introspectIface})
		}
	}
	mgrOld, mgrNow := managerValues(old, oldBackend, ""), managerValues(now, backend, "")
	ch := map[string]dbus.Variant{}
	for k, v := range mgrNow {
		if k != "Version" && mgrOld[k].String() != v.String() {
			ch[k] = v
		}
	}
	if len(ch) > 0 && (len(old) > 0 || len(added) > 0 || len(removed) > 0 || oldBackend != backend) {
		conn.Emit(Path, propsInterface+".PropertiesChanged", Interface, ch, []string{})
	}
}

func sortedNames(m map[string]JailInfo) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func managerValues(jails map[string]JailInfo, backend, version string) map[string]dbus.Variant {
	paths := []dbus.ObjectPath{}
	var cur, total uint32
	for _, n := range sortedNames(jails) {
		paths = append(paths, JailPath(n))
		cur += jails[n].CurrentlyBanned
		total += jails[n].TotalBanned
	}
	return map[string]dbus.Variant{
		"Version":         dbus.MakeVariant(version),
		"Backend":         dbus.MakeVariant(backend),
		"Jails":           dbus.MakeVariant(paths),
		"CurrentlyBanned": dbus.MakeVariant(cur),
		"BannedTotal":     dbus.MakeVariant(total),
	}
}

func jailVariants(j JailInfo) map[string]dbus.Variant {
	units := j.Units
	if units == nil {
		units = []string{}
	}
	return map[string]dbus.Variant{
		"Name":            dbus.MakeVariant(j.Name),
		"Units":           dbus.MakeVariant(units),
		"Filter":          dbus.MakeVariant(j.Filter),
		"Mode":            dbus.MakeVariant(j.Mode),
		"MaxRetry":        dbus.MakeVariant(j.MaxRetry),
		"FindTime":        dbus.MakeVariant(j.FindTime),
		"BanTime":         dbus.MakeVariant(j.BanTime),
		"CurrentlyFailed": dbus.MakeVariant(j.CurrentlyFailed),
		"TotalFailed":     dbus.MakeVariant(j.TotalFailed),
		"CurrentlyBanned": dbus.MakeVariant(j.CurrentlyBanned),
		"TotalBanned":     dbus.MakeVariant(j.TotalBanned),
	}
}

// jailChanges returns the properties of b that differ from a's.
func jailChanges(a, b JailInfo) map[string]dbus.Variant {
	va, vb := jailVariants(a), jailVariants(b)
	ch := map[string]dbus.Variant{}
	for k, v := range vb {
		if va[k].String() != v.String() {
			ch[k] = v
		}
	}
	return ch
}

// managerProps are Manager1's properties: the published ones, and the
// Manager's metrics (metrics.go) read now when it has them.
func (o *objects) managerProps() map[string]dbus.Variant {
	o.mu.Lock()
	props := managerValues(o.jails, o.backend, o.version)
	o.mu.Unlock()
	if m, ok := o.s.m.(Metered); ok {
		addMetrics(props, m)
	}
	return props
}

func (o *objects) jail(name string) (JailInfo, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ji, ok := o.jails[name]
	return ji, ok
}

// getProp answers Properties.Get from a GetAll map.
func getProp(all map[string]dbus.Variant, iface, want, name string) (dbus.Variant, *dbus.Error) {
	if iface != want {
		return dbus.Variant{}, dbus.NewError(errNameNoIface, []any{"no interface " + iface})
	}
	v, ok := all[name]
	if !ok {
		return dbus.Variant{}, dbus.NewError(errNameNoProp, []any{"no property " + name + " on " + iface})
	}
	return v, nil
}

func setRefused(iface, name string) *dbus.Error {
	return dbus.NewError(errNameReadOnly, []any{fmt.Sprintf("property %s.%s is read-only", iface, name)})
}

// managerProps is org.freedesktop.DBus.Properties on /org/jailkeeper.
type managerProps struct{ o *objects }

func (x managerProps) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	return getProp(x.o.managerProps(), iface, Interface, name)
}

func (x managerProps) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	if iface != Interface && iface != "" {
		return map[string]dbus.Variant{}, nil
	}
	return x.o.managerProps(), nil
}

func (x managerProps) Set(iface, name string, _ dbus.Variant) *dbus.Error {
	return setRefused(iface, name)
}

// objectManager is org.freedesktop.DBus.ObjectManager on /org/jailkeeper.
type objectManager struct{ o *objects }

func (x objectManager) GetManagedObjects() (map[dbus.ObjectPath]map[string]map[string]dbus.Variant, *dbus.Error) {
	x.o.mu.Lock()
	defer x.o.mu.Unlock()
	out := make(map[dbus.ObjectPath]map[string]map[string]dbus.Variant, len(x.o.jails))
	for n, ji := range x.o.jails {
		out[JailPath(n)] = map[string]map[string]dbus.Variant{JailInterface: jailVariants(ji)}
	}
	return out, nil
}

// jailProps is org.freedesktop.DBus.Properties on a jail's object.
type jailProps struct {
	o    *objects
	name string
}

func (x jailProps) all() (map[string]dbus.Variant, *dbus.Error) {
	ji, ok := x.o.jail(x.name)
	if !ok {
		return nil, dbus.NewError(errNameNoObject, []any{"jail " + x.name + " is gone"})
	}
	return jailVariants(ji), nil
}

func (x jailProps) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	all, e := x.all()
	if e != nil {
		return dbus.Variant{}, e
	}
	return getProp(all, iface, JailInterface, name)
}

func (x jailProps) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	if iface != JailInterface && iface != "" {
		return map[string]dbus.Variant{}, nil
	}
	return x.all()
}

func (x jailProps) Set(iface, name string, _ dbus.Variant) *dbus.Error {
	return setRefused(iface, name)
}

// jailMethods is org.jailkeeper.Jail1: Manager1's ban methods bound to one
// jail, under the same authorization.
type jailMethods struct {
	o    *objects
	name string
}

// Ban bans one address or CIDR in this jail for seconds (0 = the jail's
// bantime).
func (x jailMethods) Ban(msg dbus.Message, address string, secs uint64) *dbus.Error {
	return methods{x.o.s}.Ban(msg, x.name, address, secs)
}

// Unban lifts this jail's ban of address.
func (x jailMethods) Unban(msg dbus.Message, address string) (uint32, *dbus.Error) {
	return methods{x.o.s}.UnbanJail(msg, x.name, address)
}

// ListBans returns this jail's active bans, under Manager1.ListBans' rate
// limits, bound (MaxListBans, one message) and hiding of user names from
// callers other than root.
func (x jailMethods) ListBans(sender dbus.Sender) ([]BanInfo, *dbus.Error) {
	release, e := x.o.s.startRead(sender)
	if e != nil {
		return []BanInfo{}, e
	}
	defer release()
	if e := x.o.s.precheckListBans(x.name); e != nil {
		return []BanInfo{}, e
	}
	out := []BanInfo{}
	for _, b := range x.o.s.m.ListBans() {
		if b.Jail == x.name {
			out = append(out, b)
		}
	}
	out = x.o.s.hideUsers(sender, out)
	if e := x.o.s.checkListBans(out, x.name); e != nil {
		return []BanInfo{}, e
	}
	return out, nil
}

// rootIntrospect lists the jails' objects under JailRoot, so that tools
// that walk the tree (busctl tree, d-feet) find them.
type rootIntrospect struct{ o *objects }

func (x rootIntrospect) Introspect() (string, *dbus.Error) {
	x.o.mu.Lock()
	names := sortedNames(x.o.jails)
	x.o.mu.Unlock()
	var b strings.Builder
	b.WriteString(introspectDoctype + "<node>\n" + introspect.IntrospectDataString)
	for _, n := range names {
		p := string(JailPath(n))
		fmt.Fprintf(&b, "  <node name=%q/>\n", p[strings.LastIndexByte(p, '/')+1:])
	}
	b.WriteString("</node>")
	return b.String(), nil
}
