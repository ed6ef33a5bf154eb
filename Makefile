# jailkeeper — build, install, test, demo, bench.
# sudo's PATH usually lacks /usr/local/go/bin: fall back to it.
GO      ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
PREFIX  ?= /usr/local
UNITDIR ?= $(PREFIX)/lib/systemd/system
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build install uninstall purge deps-build test test-systemd test-unit fuzz demo bench clean

all: build

build: deps-build
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/jailkeeper ./cmd/jailkeeper
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/jailkeeperd ./cmd/jailkeeperd
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/jailkeeper-actions ./cmd/jailkeeper-actions
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/jailkeeper-sync ./cmd/jailkeeper-sync

# Install the binaries (jailkeeper, and next to it the executables its
# daemon, actions and sync subcommands exec), the unit, the D-Bus policy and an example drop-in.
# The unit goes where systemd looks for locally installed vendor units, so
# that /etc/systemd/system stays the administrator's: drop-ins, and
# `systemctl mask jailkeeper` (which cannot mask a unit file in /etc).
install: build
	install -D -m 0755 bin/jailkeeper $(DESTDIR)$(PREFIX)/bin/jailkeeper
	install -D -m 0755 bin/jailkeeperd $(DESTDIR)$(PREFIX)/bin/jailkeeperd
	install -D -m 0755 bin/jailkeeper-actions $(DESTDIR)$(PREFIX)/bin/jailkeeper-actions
	install -D -m 0755 bin/jailkeeper-sync $(DESTDIR)$(PREFIX)/bin/jailkeeper-sync
	install -D -m 0644 packaging/systemd/jailkeeper.service $(DESTDIR)$(UNITDIR)/jailkeeper.service
	sed -i 's|/usr/local/bin/jailkeeper|$(PREFIX)/bin/jailkeeper|g' $(DESTDIR)$(UNITDIR)/jailkeeper.service
	install -D -m 0644 packaging/systemd/jailkeeper-actions.service $(DESTDIR)$(UNITDIR)/jailkeeper-actions.service && sed -i 's|/usr/local/bin/jailkeeper|$(PREFIX)/bin/jailkeeper|g' $(DESTDIR)$(UNITDIR)/jailkeeper-actions.service
	install -D -m 0644 packaging/systemd/jailkeeper-sync.service $(DESTDIR)$(UNITDIR)/jailkeeper-sync.service && sed -i 's|/usr/local/bin/jailkeeper|$(PREFIX)/bin/jailkeeper|g' $(DESTDIR)$(UNITDIR)/jailkeeper-sync.service
	install -D -m 0644 packaging/systemd/jailkeeper-metrics.sysusers $(DESTDIR)/usr/lib/sysusers.d/jailkeeper-metrics.conf
	if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then systemd-sysusers /usr/lib/sysusers.d/jailkeeper-metrics.conf; fi
	install -D -m 0644 packaging/systemd/jailkeeper-metrics.socket $(DESTDIR)$(UNITDIR)/jailkeeper-metrics.socket
	install -D -m 0644 packaging/systemd/jailkeeper-metrics@.service $(DESTDIR)$(UNITDIR)/jailkeeper-metrics@.service && sed -i 's|/usr/local/bin/jailkeeper|$(PREFIX)/bin/jailkeeper|g' $(DESTDIR)$(UNITDIR)/jailkeeper-metrics@.service
	install -D -m 0644 packaging/systemd/org.jailkeeper.conf $(DESTDIR)/usr/share/dbus-1/system.d/org.jailkeeper.conf
	install -D -m 0644 packaging/systemd/org.jailkeeper.service $(DESTDIR)/usr/share/dbus-1/system-services/org.jailkeeper.service
	install -D -m 0644 packaging/systemd/org.jailkeeper.policy $(DESTDIR)/usr/share/polkit-1/actions/org.jailkeeper.policy
	install -D -m 0644 -t $(DESTDIR)/usr/share/cockpit/jailkeeper packaging/cockpit/jailkeeper/manifest.json packaging/cockpit/jailkeeper/index.html packaging/cockpit/jailkeeper/jailkeeper.js packaging/cockpit/jailkeeper/jailkeeper.css
	install -d -m 0755 $(DESTDIR)/etc/jailkeeper.d
	test -e $(DESTDIR)/etc/jailkeeper.d/10-sshd.yaml || install -m 0644 packaging/examples/10-sshd.yaml $(DESTDIR)/etc/jailkeeper.d/10-sshd.yaml
	@if [ -f $(DESTDIR)/etc/systemd/system/jailkeeper.service ] && [ ! -L $(DESTDIR)/etc/systemd/system/jailkeeper.service ]; then \
		echo "note: /etc/systemd/system/jailkeeper.service (an earlier make install's?) overrides $(UNITDIR)/jailkeeper.service;"; \
		echo "      to use the new unit: systemctl disable jailkeeper; rm /etc/systemd/system/jailkeeper.service; systemctl daemon-reload; systemctl enable jailkeeper"; fi
	-[ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && systemctl daemon-reload && systemctl reload dbus 2>/dev/null; true

# Stop and disable the service and mask it until its files are gone (no
# D-Bus activation in between), remove its firewall layout with the binary
# about to go (a failed teardown stops here: the binary is the tool that
# lifts the bans), then remove what install put in place. Configuration
# (/etc/jailkeeper.d) and state (/var/lib/jailkeeper) stay: `make purge`.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		set -x; systemctl disable --now jailkeeper-actions jailkeeper-sync 2>/dev/null; systemctl disable --now jailkeeper-metrics.socket 2>/dev/null; systemctl disable jailkeeper 2>/dev/null; systemctl mask --runtime --now jailkeeper; fi; true
	if [ -z "$(DESTDIR)" ] && [ -x $(PREFIX)/bin/jailkeeper ]; then $(PREFIX)/bin/jailkeeper teardown; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/jailkeeper $(DESTDIR)$(PREFIX)/bin/jailkeeperd $(DESTDIR)$(UNITDIR)/jailkeeper.service $(DESTDIR)/etc/systemd/system/jailkeeper.service \
		$(DESTDIR)$(PREFIX)/bin/jailkeeper-actions $(DESTDIR)$(UNITDIR)/jailkeeper-actions.service \
		$(DESTDIR)$(PREFIX)/bin/jailkeeper-sync $(DESTDIR)$(UNITDIR)/jailkeeper-sync.service \
		$(DESTDIR)$(UNITDIR)/jailkeeper-metrics.socket $(DESTDIR)$(UNITDIR)/jailkeeper-metrics@.service $(DESTDIR)/usr/lib/sysusers.d/jailkeeper-metrics.conf \
		$(DESTDIR)/usr/share/dbus-1/system.d/org.jailkeeper.conf $(DESTDIR)/usr/share/dbus-1/system-services/org.jailkeeper.service \
		$(DESTDIR)/usr/share/polkit-1/actions/org.jailkeeper.policy
	rm -rf $(DESTDIR)/usr/share/cockpit/jailkeeper
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		set -x; systemctl unmask --runtime jailkeeper; systemctl daemon-reload; systemctl reload dbus 2>/dev/null; fi; true

# uninstall, and remove the configuration and the ban table too.
purge: uninstall
	rm -rf $(DESTDIR)/etc/jailkeeper.d $(DESTDIR)/var/lib/jailkeeper $(DESTDIR)/var/lib/jailkeeper-actions

# The build needs cgo and libsystemd's headers (the journal reader).
deps-build:
	@scripts/deps.sh build

# vet + every test. As root this includes the end-to-end tests on real
# journald, dbus-daemon, sshd and the kernel firewall in network namespaces,
# installing their Debian packages when missing. With CI set, a missing
# prerequisite fails instead of skipping.
test: deps-build
	@scripts/deps.sh test
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then echo staticcheck ./...; staticcheck ./...; fi
	@# The pure packages build and test without cgo (no libsystemd).
	CGO_ENABLED=0 $(GO) test -count=1 ./pkg/jails ./pkg/config ./pkg/journal
	$(GO) test -count=1 -timeout 20m ./...
	@# Each fuzz target briefly (its seeds in testdata/fuzz run above too),
	@# for a count of inputs: a time limit can end the run while a worker
	@# is busy, which Go reports as "context deadline exceeded", a failure.
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20000x
	$(GO) test -count=1 -race -timeout 15m ./pkg/... ./cmd/... ./internal/keeper ./internal/actions ./internal/fleetsync
	@# The daemon's own concurrency (journal reader, main loop, conntrack
	@# killer, D-Bus handlers) runs only in the e2e tests: run them once more
	@# against a race-detector build that dies on the first race.
	@if [ "$$(id -u)" = 0 ]; then \
		echo "e2e against a -race build of the daemon"; \
		$(GO) build -race -o bin/race/jailkeeper ./cmd/jailkeeper && \
		$(GO) build -race -o bin/race/jailkeeperd ./cmd/jailkeeperd && \
		JAILKEEPER_BIN=$$PWD/bin/race/jailkeeper GORACE=halt_on_error=1 $(GO) test -count=1 -timeout 25m ./e2e/...; \
	fi

# Only the real-systemd test (systemd-nspawn over a cached debootstrap).
test-systemd: deps-build
	@scripts/deps.sh test
	$(GO) test -count=1 -v -run TestSystemdService ./systemdtest/

# The fuzz targets: config loader, D-Bus arguments, journal-entry path.
# A crasher is written to the package's testdata/fuzz/ and fails the run.
FUZZTIME ?= 2m
FUZZ_TARGETS := ./pkg/config:FuzzLoad ./pkg/config:FuzzParseDuration ./pkg/dbusapi:FuzzArgs ./pkg/jails:FuzzHandle ./pkg/fleet:FuzzDecode
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) $${t%:*}; \
	done

test-unit:
	$(GO) test -count=1 -short ./pkg/... ./cmd/... ./internal/keeper

# A real ban inside network namespaces, never touching the host firewall.
demo: deps-build
	@scripts/deps.sh test
	$(GO) run ./demo

bench: deps-build
	@scripts/deps.sh test
	scripts/bench.sh

clean:
	rm -rf bin
