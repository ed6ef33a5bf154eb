package dbusapi

import (
	"reflect"
	"slices"
	"testing"

	"github.com/godbus/dbus/v5"
)

// TestTablesListEveryMethod: each exported type's table lists exactly its
// methods that godbus would export (exported, *dbus.Error last), each
// under its own name and bound to that method: a method added to a type
// but not to its table would be missing from the bus.
func TestTablesListEveryMethod(t *testing.T) {
	errType := reflect.TypeOf((*dbus.Error)(nil))
	for _, v := range []exported{methods{}, managerProps{}, objectManager{}, jailProps{}, jailMethods{}, rootIntrospect{}, introspectable("")} {
		typ := reflect.TypeOf(v)
		var want []string
		for i := range typ.NumMethod() {
			m := typ.Method(i)
			ft := m.Type
			if ft.NumOut() > 0 && ft.Out(ft.NumOut()-1) == errType {
				want = append(want, m.Name)
			}
		}
		tab := v.table()
		var got []string
		for name, f := range tab {
			got = append(got, name)
			m, ok := typ.MethodByName(name)
			if !ok {
				t.Errorf("%s: table entry %s is no method of the type", typ, name)
				continue
			}
			// A method value's type is the method's without the receiver.
			if ft := reflect.TypeOf(f); ft.NumIn() != m.Type.NumIn()-1 || ft.NumOut() != m.Type.NumOut() {
				t.Errorf("%s: table entry %s is %s, not the method %s", typ, name, ft, m.Type)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: table lists %q, the type's D-Bus methods are %q", typ, got, want)
		}
	}
}
