package dbusapi

import (
	"time"

	"github.com/godbus/dbus/v5"
)

// DaemonMetrics are the daemon's own counters, published as Manager1
// properties for operators (jailkeeper metrics).
type DaemonMetrics struct {
	// JournalEntriesRead counts the journal entries the daemon handled
	// since it started.
	JournalEntriesRead uint64
	// JournalLag is how far the daemon is behind the journal's tail: 0
	// when it has handled every entry its reader found (or no reader
	// runs), else the age of the oldest entry waiting.
	JournalLag time.Duration
	// LastVerify is when the firewall layout was last verified (the
	// watchdog's check, or a repair after drift); zero: not yet.
	// LastVerifyOK says whether that left the layout as it must be.
	LastVerify   time.Time
	LastVerifyOK bool
	// FirewallRepairs counts the verifications that found drift and
	// repaired it.
	FirewallRepairs uint64
}

// Metered is what a Manager implements to publish DaemonMetrics.
type Metered interface {
	DaemonMetrics() DaemonMetrics
}

// metricsProperties are DaemonMetrics' properties in introspection. They
// change too often to be announced: a client reads them when it wants
// them.
const metricsProperties = `    <property name="JournalEntriesRead" type="t" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></property>
    <property name="JournalLagSeconds" type="d" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></property>
    <property name="LastVerifyTime" type="x" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></property>
    <property name="LastVerifyOK" type="b" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></property>
    <property name="FirewallRepairs" type="t" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></property>
`

// addMetrics adds m's properties to props (Manager1's GetAll).
func addMetrics(props map[string]dbus.Variant, m Metered) {
	dm := m.DaemonMetrics()
	var at int64
	if !dm.LastVerify.IsZero() {
		at = dm.LastVerify.Unix()
	}
	props["JournalEntriesRead"] = dbus.MakeVariant(dm.JournalEntriesRead)
	props["JournalLagSeconds"] = dbus.MakeVariant(dm.JournalLag.Seconds())
	props["LastVerifyTime"] = dbus.MakeVariant(at)
	props["LastVerifyOK"] = dbus.MakeVariant(dm.LastVerifyOK)
	props["FirewallRepairs"] = dbus.MakeVariant(dm.FirewallRepairs)
}
