package dbusapi

import (
	"strings"

	"github.com/godbus/dbus/v5/introspect"
)

// managerProperties are Manager1's properties as introspection shows them.
const managerProperties = `    <property name="Version" type="s" access="read"/>
    <property name="Backend" type="s" access="read"/>
    <property name="Jails" type="ao" access="read"/>
    <property name="CurrentlyBanned" type="u" access="read"/>
    <property name="BannedTotal" type="u" access="read"/>
`

const propertiesXML = `  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get"><arg name="interface_name" type="s" direction="in"/><arg name="property_name" type="s" direction="in"/><arg name="value" type="v" direction="out"/></method>
    <method name="GetAll"><arg name="interface_name" type="s" direction="in"/><arg name="props" type="a{sv}" direction="out"/></method>
    <method name="Set"><arg name="interface_name" type="s" direction="in"/><arg name="property_name" type="s" direction="in"/><arg name="value" type="v" direction="in"/></method>
    <signal name="PropertiesChanged"><arg name="interface_name" type="s"/><arg name="changed_properties" type="a{sv}"/><arg name="invalidated_properties" type="as"/></signal>
  </interface>
`

const objectManagerXML = `  <interface name="org.freedesktop.DBus.ObjectManager">
    <method name="GetManagedObjects"><arg name="objects" type="a{oa{sa{sv}}}" direction="out"/></method>
    <signal name="InterfacesAdded"><arg name="object_path" type="o"/><arg name="interfaces_and_properties" type="a{sa{sv}}"/></signal>
    <signal name="InterfacesRemoved"><arg name="object_path" type="o"/><arg name="interfaces" type="as"/></signal>
  </interface>
`

const peerXML = `  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"></method>
    <method name="GetMachineId"><arg name="machine_uuid" type="s" direction="out"/></method>
  </interface>
`

// managerXML describes /org/jailkeeper with the object model: Manager1
// with its properties, Properties, ObjectManager, and the jail subtree.
var managerXML = strings.Replace(
	strings.Replace(introspectXML, "  </interface>", managerProperties+metricsProperties+"  </interface>", 1),
	"</node>", propertiesXML+objectManagerXML+`  <node name="jail"/>
</node>`, 1)

// jailXML describes one jail's object.
const jailXML = introspectDoctype + `<node>
  <interface name="org.jailkeeper.Jail1">
    <method name="Ban"><arg name="address" type="s" direction="in"/><arg name="seconds" type="t" direction="in"/></method>
    <method name="Unban"><arg name="address" type="s" direction="in"/><arg name="removed" type="u" direction="out"/></method>
    <method name="ListBans"><arg name="bans" type="a(ssxxs)" direction="out"/></method>
    <method name="ListHistory"><arg name="offset" type="u" direction="in"/><arg name="limit" type="u" direction="in"/><arg name="events" type="a(xsssuxss)" direction="out"/><arg name="total" type="u" direction="out"/></method>
    <property name="Name" type="s" access="read"/>
    <property name="Units" type="as" access="read"/>
    <property name="Filter" type="s" access="read"/>
    <property name="Mode" type="s" access="read"/>
    <property name="MaxRetry" type="u" access="read"/>
    <property name="FindTime" type="x" access="read"/>
    <property name="BanTime" type="x" access="read"/>
    <property name="CurrentlyFailed" type="u" access="read"/>
    <property name="TotalFailed" type="u" access="read"/>
    <property name="CurrentlyBanned" type="u" access="read"/>
    <property name="TotalBanned" type="u" access="read"/>
  </interface>
` + propertiesXML + introspect.IntrospectDataString + peerXML + `</node>`
