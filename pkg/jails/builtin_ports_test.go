package jails

import "testing"

func TestBuiltinPorts(t *testing.T) {
	for _, n := range BuiltinNames() {
		if len(BuiltinPorts(n)) == 0 {
			t.Errorf("built-in filter %s has no default ports", n)
		}
	}
	for n := range builtinPorts {
		if _, ok := builtins[n]; !ok {
			t.Errorf("ports for %s, which is no built-in filter", n)
		}
	}
	if p := BuiltinPorts("nosuch"); p != nil {
		t.Errorf("BuiltinPorts(nosuch) = %v, want nil", p)
	}
	p := BuiltinPorts("sshd")
	p[0] = 1
	if BuiltinPorts("sshd")[0] != 22 {
		t.Error("BuiltinPorts returns the table itself")
	}
}
