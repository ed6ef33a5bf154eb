package dbusapi

import (
	"fmt"
	"sort"
	"time"

	"github.com/godbus/dbus/v5"
)

// DaemonInfo is Manager1's properties as a client reads them.
type DaemonInfo struct {
	Version         string
	Backend         string
	CurrentlyBanned uint32
	BannedTotal     uint32
	// Metrics are the daemon's own counters; nil from a daemon that does
	// not publish them.
	Metrics *DaemonMetrics
}

// Objects reads the object model: Manager1's properties and every jail's
// object (GetManagedObjects), jails sorted by name.
func (c *Client) Objects() (DaemonInfo, []JailInfo, error) {
	var di DaemonInfo
	obj := c.conn.Object(BusName, Path)
	var props map[string]dbus.Variant
	if err := obj.Call(propsInterface+".GetAll", 0, Interface).Store(&props); err != nil {
		return di, nil, fmt.Errorf("reading %s's properties: %w", Interface, notRunning(err))
	}
	get := func(name string, out any) error {
		v, ok := props[name]
		if !ok {
			return fmt.Errorf("%s has no property %s (an older daemon?)", Interface, name)
		}
		return v.Store(out)
	}
	for name, out := range map[string]any{"Version": &di.Version, "Backend": &di.Backend, "CurrentlyBanned": &di.CurrentlyBanned, "BannedTotal": &di.BannedTotal} {
		if err := get(name, out); err != nil {
			return di, nil, err
		}
	}
	if _, ok := props["JournalEntriesRead"]; ok {
		var dm DaemonMetrics
		var lag float64
		var at int64
		for name, out := range map[string]any{"JournalEntriesRead": &dm.JournalEntriesRead, "JournalLagSeconds": &lag,
			"LastVerifyTime": &at, "LastVerifyOK": &dm.LastVerifyOK, "FirewallRepairs": &dm.FirewallRepairs} {
			if err := get(name, out); err != nil {
				return di, nil, err
			}
		}
		dm.JournalLag = time.Duration(lag * float64(time.Second))
		if at != 0 {
			dm.LastVerify = time.Unix(at, 0)
		}
		di.Metrics = &dm
	}
	var managed map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	if err := obj.Call(objMgrInterface+".GetManagedObjects", 0).Store(&managed); err != nil {
		return di, nil, fmt.Errorf("listing jails: %w", notRunning(err))
	}
	var out []JailInfo
	for path, ifaces := range managed {
		p, ok := ifaces[JailInterface]
		if !ok {
			continue
		}
		var ji JailInfo
		for name, dst := range map[string]any{
			"Name": &ji.Name, "Units": &ji.Units, "Filter": &ji.Filter, "Mode": &ji.Mode,
			"MaxRetry": &ji.MaxRetry, "FindTime": &ji.FindTime, "BanTime": &ji.BanTime,
			"CurrentlyFailed": &ji.CurrentlyFailed, "TotalFailed": &ji.TotalFailed,
			"CurrentlyBanned": &ji.CurrentlyBanned, "TotalBanned": &ji.TotalBanned,
		} {
			v, ok := p[name]
			if !ok {
				return di, nil, fmt.Errorf("jail object %s has no property %s", path, name)
			}
			if err := v.Store(dst); err != nil {
				return di, nil, fmt.Errorf("jail object %s, property %s: %w", path, name, err)
			}
		}
		out = append(out, ji)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return di, out, nil
}

// notRunning words a missing service as the other client calls do.
func notRunning(err error) error {
	if de, ok := err.(dbus.Error); ok && de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" {
		return fmt.Errorf("jailkeeper is not running (no %s on the system bus)", BusName)
	}
	return FromDBusError(err)
}
