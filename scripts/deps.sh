#!/bin/sh
# Installs what jailkeeper's build (libsystemd headers for cgo) or tests
# (the real test bed: iptables, nftables, ipset, sshd, dbus, conntrack) need,
# from Debian's packages, when run as root and something is missing.
# Non-root: reports what is missing; the root-only tests then skip (or fail
# when CI is set).
set -eu
what=${1:-test}
missing=""
need_pkg() { missing="$missing $1"; }

[ -e /usr/include/systemd/sd-journal.h ] || need_pkg libsystemd-dev
command -v pkg-config >/dev/null || need_pkg pkg-config
command -v gcc >/dev/null || need_pkg gcc
if [ "$what" = test ]; then
	command -v iptables >/dev/null || need_pkg iptables
	command -v ipset >/dev/null || need_pkg ipset
	command -v nft >/dev/null || need_pkg nftables
	[ -x /usr/sbin/sshd ] || need_pkg openssh-server
	command -v ssh >/dev/null || need_pkg openssh-client
	command -v sshpass >/dev/null || need_pkg sshpass
	command -v dbus-daemon >/dev/null || need_pkg dbus
	command -v conntrack >/dev/null || need_pkg conntrack
	command -v systemd-nspawn >/dev/null || need_pkg systemd-container
	command -v debootstrap >/dev/null || need_pkg debootstrap
	command -v ip >/dev/null || need_pkg iproute2
	command -v setpriv >/dev/null || need_pkg util-linux
	command -v journalctl >/dev/null || need_pkg systemd
	[ -x /lib/systemd/systemd-journald ] || need_pkg systemd
	# The conformance suite reads fail2ban's annotated sample logs.
	[ -d /usr/lib/python3/dist-packages/fail2ban/tests/files/logs ] || need_pkg fail2ban
	# Real sshd partners (beyond openssh-server above): a password user for PAM.
	command -v chpasswd >/dev/null || need_pkg passwd

	# Real mail daemons for the e2e tests: postfix (submission with SASL
	# through dovecot), dovecot for IMAP and POP3, curl as their client.
	command -v postfix >/dev/null || need_pkg postfix
	[ -x /usr/sbin/dovecot ] || need_pkg dovecot-core
	[ -x /usr/lib/dovecot/imap-login ] || need_pkg dovecot-imapd
	[ -x /usr/lib/dovecot/pop3-login ] || need_pkg dovecot-pop3d
	command -v curl >/dev/null || need_pkg curl
	# courier: authdaemond and courierlogger/couriertcpd are installed;
	# courier-imap conflicts with dovecot-imapd (both provide imap-server),
	# so it is unpacked into a directory of its own, with the libraries it
	# links installed.
	[ -x /usr/sbin/authdaemond ] || need_pkg courier-authdaemon
	[ -x /usr/sbin/couriertcpd ] || need_pkg courier-base
	for p in libgamin0 libgdbm6 libidn12 libcourier-unicode4; do
		dpkg -s $p >/dev/null 2>&1 || need_pkg $p
	done
	# qmail's RBL front end rblsmtpd (Debian 12 ships no qmail).
	command -v rblsmtpd >/dev/null || need_pkg ucspi-tcp
	courier_imap=/var/lib/jailkeeper-test/courier-imap
	if [ ! -x $courier_imap/usr/lib/courier/courier/imaplogin ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		d=$(mktemp -d)
		(cd "$d" && { apt-get download -q courier-imap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get download -q courier-imap >/dev/null; }; } &&
			mkdir -p $courier_imap && dpkg-deb -x courier-imap_*.deb $courier_imap) ||
			echo "could not unpack courier-imap into $courier_imap" >&2
		rm -rf "$d"
	fi

	# Real web servers for the e2e tests.
	[ -x /usr/sbin/nginx ] || need_pkg nginx
	[ -x /usr/sbin/apache2 ] || need_pkg apache2
	[ -x /usr/sbin/lighttpd ] || need_pkg lighttpd
	command -v curl >/dev/null || need_pkg curl

	# Real FTP daemons for the e2e tests. Debian's FTP servers conflict
	# with each other (all provide ftp-server): vsftpd is installed, and
	# proftpd-core and pure-ftpd are unpacked (no maintainer scripts, no
	# service) under $ftp_root with pure-ftpd-common (its PAM file), their
	# libraries installed.
	[ -x /usr/sbin/vsftpd ] || need_pkg vsftpd
	command -v curl >/dev/null || need_pkg curl
	for p in libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3 libsodium23 libpam-modules; do
		dpkg -s "$p" >/dev/null 2>&1 || need_pkg "$p"
	done
	ftp_root=${JAILKEEPER_FTP_ROOT:-/var/cache/jailkeeper-test/ftp}
	if [ ! -x "$ftp_root/usr/sbin/proftpd" ] || [ ! -e "$ftp_root/etc/pam.d/pure-ftpd" ]; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			echo "unpacking proftpd-core and pure-ftpd into $ftp_root"
			d=$(mktemp -d)
			( cd "$d" && { apt-get download -q proftpd-core pure-ftpd pure-ftpd-common >/dev/null 2>&1 ||
				{ apt-get update -q >/dev/null && apt-get download -q proftpd-core pure-ftpd pure-ftpd-common >/dev/null 2>&1; }; } )
			mkdir -p "$ftp_root"
			for f in "$d"/*.deb; do dpkg-deb -x "$f" "$ftp_root"; done
			rm -rf "$d"
		else
			missing="$missing proftpd-core(unpacked) pure-ftpd(unpacked)"
		fi
	fi

	# jailkeeper actions: Debian's whois client (its MTA is postfix, above).
	command -v whois >/dev/null || need_pkg whois

	# The Cockpit page: Debian's cockpit-ws serves it with cockpit-bridge,
	# headless Chromium drives it (its DevTools protocol over a pipe).
	[ -x /usr/lib/cockpit/cockpit-ws ] || need_pkg cockpit-ws
	command -v cockpit-bridge >/dev/null || need_pkg cockpit-bridge
	[ -d /usr/share/cockpit/shell ] || need_pkg cockpit-system
	command -v chromium >/dev/null || need_pkg chromium
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "installing:$missing"
	# Never let a package start services on this machine.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing >/dev/null
	exit 0
fi
echo "missing packages:$missing (run as root to install them)" >&2
case "$missing" in *libsystemd-dev*|*gcc*|*pkg-config*) exit 1 ;; esac
exit 0
