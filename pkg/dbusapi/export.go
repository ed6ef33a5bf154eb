package dbusapi

import "github.com/godbus/dbus/v5"

// The service's objects are exported as method tables, never with
// conn.Export: Export finds a value's methods through reflect.Value.Method,
// and a program that can call that keeps every exported method of every
// type it converts to an interface, which made the daemon's binary 1.7 MB
// larger (on this kernel its size is resident memory). Each type lists
// its D-Bus methods in table; TestTablesListEveryMethod checks the lists
// against the types' method sets.

// exported is a value whose D-Bus methods can be exported.
type exported interface {
	// table maps each D-Bus method name to the method value.
	table() map[string]any
}

// export registers v's methods on conn at path under iface; a nil v
// removes iface from path.
func export(conn *dbus.Conn, v exported, path dbus.ObjectPath, iface string) error {
	if v == nil {
		return conn.ExportMethodTable(nil, path, iface)
	}
	return conn.ExportMethodTable(v.table(), path, iface)
}

func (x methods) table() map[string]any {
	return map[string]any{
		"Ban":          x.Ban,
		"BanMany":      x.BanMany,
		"BanFrom":      x.BanFrom,
		"Unban":        x.Unban,
		"UnbanJail":    x.UnbanJail,
		"UnbanAll":     x.UnbanAll,
		"Status":       x.Status,
		"ListBans":     x.ListBans,
		"ListBansPage": x.ListBansPage,
		"ListHistory":  x.ListHistory,
		"Reload":       x.Reload,
	}
}

func (x managerProps) table() map[string]any {
	return map[string]any{"Get": x.Get, "GetAll": x.GetAll, "Set": x.Set}
}

func (x objectManager) table() map[string]any {
	return map[string]any{"GetManagedObjects": x.GetManagedObjects}
}

func (x jailProps) table() map[string]any {
	return map[string]any{"Get": x.Get, "GetAll": x.GetAll, "Set": x.Set}
}

func (x jailMethods) table() map[string]any {
	return map[string]any{"Ban": x.Ban, "Unban": x.Unban, "ListBans": x.ListBans, "ListHistory": x.ListHistory}
}

func (x rootIntrospect) table() map[string]any {
	return map[string]any{"Introspect": x.Introspect}
}

// introspectable is org.freedesktop.DBus.Introspectable answering with a
// fixed document.
type introspectable string

// Introspect returns the document.
func (x introspectable) Introspect() (string, *dbus.Error) { return string(x), nil }

func (x introspectable) table() map[string]any {
	return map[string]any{"Introspect": x.Introspect}
}
