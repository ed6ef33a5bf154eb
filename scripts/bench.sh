#!/bin/sh
# `make bench`: jailkeeper measured side by side with fail2ban on the same
# workload in one run, the firewall backends, and the
# `go test -bench` lines of the hot functions. Root only: it builds private
# journalds, a private system bus and network namespaces, and removes them
# at the end; the host's journal and firewall are never touched.
# docs/bench.md says what every number means.
#
# Environment:
#   BENCH_E2E_ARGS   extra flags for internal/bench/e2e (e.g. "-entries 50000")
#   BENCH_FW_ARGS    flags for internal/bench/firewall (default below)
#   BENCH_SKIP       space-separated sections to skip: e2e firewall actions fleet gobench
#   BENCH_OUT        also write the whole output here (default bin/bench-last.txt)
#   BENCH_PROFILE    1: the daemon writes its own Go CPU profile over the e2e
#                    run (JAILKEEPER_CPUPROFILE; its build then links
#                    runtime/pprof, which adds about 0.15 MB to its idle RSS)
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
GO=${GO:-go}
out=${BENCH_OUT:-bin/bench-last.txt}
skip=" ${BENCH_SKIP:-} "
fw_args=${BENCH_FW_ARGS:--max 1000000 -connects 2000 -per-rule 10000}

if [ "$(id -u)" != 0 ]; then
	echo "bench: must run as root (network namespaces, private journald, kernel sets)" >&2
	exit 1
fi

# fail2ban from Debian's packages, installed so that it never starts and
# never touches a firewall: a policy-rc.d that refuses service starts
# during the install (kept if one was already there), and the unit's
# enablement symlink removed if the install created it.
ensure_fail2ban() {
	command -v fail2ban-regex >/dev/null && /usr/bin/python3 -c 'import systemd.journal' 2>/dev/null && return 0  # fail2ban's interpreter, not a pyenv one
	command -v apt-get >/dev/null || { echo "bench: fail2ban missing and no apt-get: fail2ban not measured" >&2; return 1; }
	wants=/etc/systemd/system/multi-user.target.wants/fail2ban.service
	had_wants=false; [ -e "$wants" ] || [ -L "$wants" ] && had_wants=true
	made_policy=false
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		made_policy=true
	fi
	echo "bench: installing fail2ban (service starts blocked by policy-rc.d)" >&2
	rc=0
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fail2ban python3-systemd >/dev/null || rc=$?
	if [ $rc != 0 ]; then
		apt-get update -q >/dev/null 2>&1 || true
		rc=0
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fail2ban python3-systemd >/dev/null || rc=$?
	fi
	$made_policy && rm -f /usr/sbin/policy-rc.d
	$had_wants || rm -f "$wants"
	[ $rc = 0 ] || { echo "bench: installing fail2ban failed: fail2ban not measured" >&2; return 1; }
}

tmp=$(mktemp -d /tmp/jailkeeper-bench-XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$(dirname "$out")"

section() { printf '\n=== %s ===\n' "$*"; }

main() {
	echo "jailkeeper bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git describe --always --dirty 2>/dev/null || echo '?'), $(nproc) CPUs, kernel $(uname -r)"
	status=0
	case $skip in *" e2e "*) ;; *)
		section "1. jailkeeper vs fail2ban, same workload"
		e2e_args=""
		ensure_fail2ban || e2e_args="-no-fail2ban"
		$GO build -o "$tmp/bench-e2e" ./internal/bench/e2e
		# shellcheck disable=SC2086
		perf_arg=""
		command -v perf >/dev/null && perf_arg="-perf $tmp/daemon.perf"
		# shellcheck disable=SC2086
		prof=""
		[ "${BENCH_PROFILE:-}" = 1 ] && prof="$tmp/daemon.prof"
		JAILKEEPER_CPUPROFILE="$prof" "$tmp/bench-e2e" -cpuprofile "$tmp/cpu.prof" $perf_arg $e2e_args ${BENCH_E2E_ARGS:-} || status=1
		if [ -s "$tmp/daemon.prof" ]; then
			section "where the daemon's time goes over the whole run: its own pprof (JAILKEEPER_CPUPROFILE; cumulative, project code)"
			$GO tool pprof -top -cum -nodecount=200 "$tmp/daemon.prof" 2>/dev/null |
				grep -E '(main\.|jailkeeper/pkg|bbolt|godbus|netlink)' | head -20 || true
		fi
		if [ -s "$tmp/daemon.perf" ]; then
			section "where the daemon's time goes: perf record -g of jailkeeper during live burst B (inclusive %, project code)"
			perf report -i "$tmp/daemon.perf" --stdio --children --sort sym -g none --percent-limit 1 2>/dev/null |
				grep -E '%.*(main\.|jailkeeper|bbolt|godbus|go-systemd|netlink\.|nftables)' | sed 's/ *$//' | head -25 || true
			echo "by object (self %):"
			perf report -i "$tmp/daemon.perf" --stdio --no-children --sort dso -g none 2>/dev/null | grep '%' | grep -v '^#' | sed 's/ *$//' | head -6 || true
		fi
		if [ -s "$tmp/cpu.prof" ]; then
			section "where the time goes in process: pprof of sdjournal.Reader -> jails.Engine over burst A (top 15, flat)"
			$GO tool pprof -top -nodecount=15 "$tmp/bench-e2e" "$tmp/cpu.prof" 2>/dev/null | sed -n '/^Showing nodes/,$p' || true
		fi
	;; esac
	case $skip in *" firewall "*) ;; *)
		section "2. firewall backends"
		if [ -f internal/bench/firewall/main.go ]; then
			# shellcheck disable=SC2086
			$GO run ./internal/bench/firewall $fw_args || status=1
		else
			echo "HOOK: internal/bench/firewall is not in this tree yet; its table goes here"
		fi
	;; esac
	case $skip in *" actions "*) ;; *)
		section "4. jailkeeper actions: idle RSS, a 5,000-ban burst to a webhook and a digest mail"
		$GO run ./internal/bench/actions || status=1
	;; esac
	case $skip in *" fleet "*) ;; *)
		section "5. jailkeeper sync: two hosts through NATS — ban to the other's kernel, a 10,000-ban burst, idle RSS"
		$GO run ./internal/bench/fleet || status=1
	;; esac
	case $skip in *" gobench "*) ;; *)
		section "3. go test -bench: sshd filter and engine (pkg/jails)"
		$GO test ./pkg/jails -run '^$' -bench 'SSHDFilter|EngineHandle' -benchmem -count 1 || status=1
		section "3c. go test -bench: one ban-path commit of 25 bans + cursor, synced to disk (pkg/bans)"
		$GO test ./pkg/bans -run '^$' -bench 'Commit' -benchtime 200x -benchmem -count 1 || status=1
		if grep -qs 'func BenchmarkRead' pkg/journal/sdjournal/*_test.go; then
			section "3b. go test -bench: journal reader (pkg/journal/sdjournal, private journald)"
			$GO test ./pkg/journal/sdjournal -run '^$' -bench 'Read' -benchtime 3x -count 1 || status=1
		fi
	;; esac
	return $status
}

# The exit status survives the tee.
set +e
{ main; echo $? > "$tmp/status"; } 2>&1 | tee "$out"
status=$(cat "$tmp/status" 2>/dev/null || echo 1)
echo "(output saved in $out)"
exit "$status"
