/* jailkeeper's Cockpit page: reads and watches the daemon's D-Bus object
 * model (org.jailkeeper on the system bus) and changes bans through it.
 * Plain JavaScript on Cockpit's own cockpit.js: no build step. */
"use strict";

(function () {
    const BUS_NAME = "org.jailkeeper";
    const MANAGER_PATH = "/org/jailkeeper";
    const MANAGER = "org.jailkeeper.Manager1";
    const JAIL = "org.jailkeeper.Jail1";
    const PAGE_SIZE = 50;

    const state = {
        bans: new Map(), // jail + "\n" + address → {jail, address, start, expires, reason}
        jails: {}, // path → proxy
        sortKey: "start",
        sortDesc: true,
        page: 0,
        search: "",
        admin: false,
        running: false,
        historyJail: "",
        historyPage: 0,
        historyTotal: 0,
    };

    let client, jails, permission;
    // Manager1's properties. Read with GetAll and kept by PropertiesChanged:
    // /org/jailkeeper holds the ObjectManager, whose GetManagedObjects
    // lists the jails below it but not itself, so a proxy would not load.
    const manager = {};

    function $(id) { return document.getElementById(id); }

    function el(tag, text, cls) {
        const e = document.createElement(tag);
        if (text !== undefined && text !== null)
            e.textContent = String(text);
        if (cls)
            e.className = cls;
        return e;
    }

    function duration(secs) {
        secs = Number(secs);
        if (secs < 0)
            return "permanent";
        const units = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
        for (const [n, u] of units) {
            if (secs >= n && secs % n === 0)
                return (secs / n) + " " + u;
        }
        return secs + " s";
    }

    function when(unix) {
        if (!unix)
            return "never (permanent)";
        return new Date(Number(unix) * 1000).toLocaleString();
    }

    function showError(text) {
        const e = $("error");
        e.textContent = text || "";
        e.hidden = !text;
    }

    function event(text) {
        const list = $("events");
        const li = el("li", new Date().toLocaleTimeString() + "  " + text);
        list.insertBefore(li, list.firstChild);
        while (list.childNodes.length > 200)
            list.removeChild(list.lastChild);
    }

    /* Service state and access. */

    function renderState() {
        const s = $("service");
        if (!state.running) {
            s.textContent = "jailkeeper is not running (nobody owns " + BUS_NAME + " on the system bus)";
            s.className = "state stopped";
        } else {
            const v = manager.Version ? manager.Version + " " : "";
            const b = manager.Backend ? ", firewall backend " + manager.Backend : "";
            const n = manager.CurrentlyBanned !== undefined
                ? ": " + manager.CurrentlyBanned + " bans in force, " + manager.BannedTotal + " started in all"
                : "";
            s.textContent = "jailkeeper " + v + "is running" + b + n;
            s.className = "state running";
        }
        $("access").textContent = state.admin
            ? "Administrative access: you can ban and unban."
            : "Read-only: turn on administrative access to ban and unban.";
        document.body.classList.toggle("read-only", !state.admin);
        for (const id of ["ban-jail", "ban-address", "ban-amount", "ban-unit", "ban-button"])
            $(id).disabled = !state.admin || !state.running;
        $("ban-section").hidden = !state.admin;
    }

    /* Jails. */

    function jailList() {
        return Object.keys(state.jails)
                .map(p => state.jails[p])
                .filter(j => j.valid && j.Name)
                .sort((a, b) => a.Name.localeCompare(b.Name));
    }

    function renderJails() {
        const body = $("jails").tBodies[0];
        body.textContent = "";
        const list = jailList();
        for (const j of list) {
            const tr = el("tr");
            tr.dataset.jail = j.Name;
            const filter = j.Filter ? j.Filter + (j.Mode ? " (" + j.Mode + ")" : "") : "own failregex";
            tr.append(el("td", j.Name), el("td", filter), el("td", (j.Units || []).join(", ")),
                      el("td", j.MaxRetry, "num"), el("td", duration(j.FindTime), "num"), el("td", duration(j.BanTime), "num"),
                      el("td", j.CurrentlyFailed, "num"), el("td", j.TotalFailed, "num"),
                      el("td", j.CurrentlyBanned, "num"), el("td", j.TotalBanned, "num"));
            body.appendChild(tr);
        }
        if (list.length === 0)
            body.appendChild(el("tr")).appendChild(el("td", "No jails.")).colSpan = 10;
        const sel = $("ban-jail");
        const keep = sel.value;
        sel.textContent = "";
        for (const j of list)
            sel.appendChild(el("option", j.Name)).value = j.Name;
        if (keep)
            sel.value = keep;
        const hsel = $("history-jail");
        hsel.textContent = "";
        hsel.appendChild(el("option", "all jails")).value = "";
        for (const j of list)
            hsel.appendChild(el("option", j.Name)).value = j.Name;
        hsel.value = state.historyJail;
    }

    /* History: a page of ListHistory (newest first), read again soon after
     * each ban signal while the page is open. */

    const KIND = { ban: "banned", unban: "unbanned", expiry: "expired" };
    const ORIGIN = { journal: "the jail's filter", admin: "an administrator", config: "the configuration", "": "" };

    function loadHistory() {
        if (!state.running)
            return Promise.resolve();
        return client.call(MANAGER_PATH, MANAGER, "ListHistory", [state.historyJail, state.historyPage * PAGE_SIZE, PAGE_SIZE], { type: "suu" })
                .then(([list, total]) => renderHistory(list, Number(total)))
                .catch(ex => showError("Reading the ban history: " + ex.message));
    }

    let historyTimer = null;
    function scheduleHistory() {
        if (historyTimer === null)
            historyTimer = window.setTimeout(() => { historyTimer = null; loadHistory() }, 300);
    }

    function renderHistory(list, total) {
        state.historyTotal = total;
        const body = $("history").tBodies[0];
        body.textContent = "";
        for (const [time, kind, jail, address, count, expires, reason, origin] of list) {
            const tr = el("tr");
            tr.dataset.address = address;
            tr.dataset.jail = jail;
            tr.dataset.kind = kind;
            let what = KIND[kind] || kind;
            if (kind === "ban")
                what += expires ? " until " + when(expires) : " permanently";
            const addr = count > 1 ? address + " and " + (count - 1) + " more" : address;
            tr.append(el("td", when(time)), el("td", addr), el("td", jail), el("td", what), el("td", reason),
                      el("td", origin in ORIGIN ? ORIGIN[origin] : "server " + origin));
            body.appendChild(tr);
        }
        if (list.length === 0)
            body.appendChild(el("tr")).appendChild(el("td", "No events.")).colSpan = 6;
        const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
        $("history-count").textContent = "(" + total + " events)";
        $("history-page").textContent = "page " + (state.historyPage + 1) + " of " + pages;
        $("history-prev").disabled = state.historyPage === 0;
        $("history-next").disabled = state.historyPage >= pages - 1;
    }

    /* Bans: the table read in pages of ListBansPage (one ListBans reply
     * cannot carry a big table: the daemon refuses it above 10,000 bans),
     * kept current by the ban signals. */

    const BAN_PAGE = 4096;

    function key(jail, address) { return jail + "\n" + address; }

    function setManager(props) {
        for (const name in props)
            manager[name] = props[name].v;
        renderState();
    }

    function loadManager() {
        return client.call(MANAGER_PATH, "org.freedesktop.DBus.Properties", "GetAll", [MANAGER], { type: "s" })
                .then(([props]) => setManager(props))
                .catch(ex => showError("Reading the daemon's state: " + ex.message));
    }

    // Signals that arrive while the pages are read wait here and are
    // applied to the table once it is read; null when not loading.
    let loading = null;

    function loadBans() {
        const bans = new Map();
        const waiting = loading = [];
        // The pages overlap by one ban; a page may hold fewer bans than
        // asked for (the daemon cuts it to one bus message).
        function page(offset) {
            return client.call(MANAGER_PATH, MANAGER, "ListBansPage", [offset, BAN_PAGE], { type: "uu" })
                    .then(([list, total]) => {
                        for (const [jail, address, start, expires, reason] of list)
                            bans.set(key(jail, address), { jail, address, start: Number(start), expires: Number(expires), reason });
                        const n = list.length;
                        if (n === 0 || offset + n >= Number(total))
                            return;
                        return page(n > 1 ? offset + n - 1 : offset + 1);
                    });
        }
        return page(0)
                .then(() => {
                    if (loading !== waiting)
                        return; // a newer load replaced this one
                    loading = null;
                    state.bans = bans;
                    for (const [signal, args] of waiting)
                        apply(signal, args);
                    scheduleRender();
                })
                .catch(ex => {
                    if (loading === waiting)
                        loading = null;
                    showError("Listing bans: " + ex.message);
                });
    }

    function banned(jail, address, expires, reason) {
        const now = Math.floor(Date.now() / 1000);
        const old = state.bans.get(key(jail, address));
        state.bans.set(key(jail, address), { jail, address, start: old ? old.start : now, expires: Number(expires), reason: reason || (old ? old.reason : "") });
    }

    function onSignal(path, iface, signal, args) {
        if (iface !== MANAGER)
            return;
        const text = apply(signal, args);
        if (text === null)
            return;
        if (loading !== null)
            loading.push([signal, args]);
        event(text);
        scheduleRender();
        scheduleHistory();
    }

    // apply applies a ban signal to the table and returns the line for
    // the event list; null for other signals.
    function apply(signal, args) {
        switch (signal) {
        case "Banned":
            banned(args[0], args[1], args[2], args[3]);
            return "banned " + args[1] + " in " + args[0] + (args[3] ? " (" + args[3] + ")" : "");
        case "BannedMany":
            args[1].forEach((a, i) => banned(args[0], a, args[2][i], ""));
            return "banned " + args[1].length + " addresses in " + args[0];
        case "Unbanned":
            state.bans.delete(key(args[0], args[1]));
            return "unbanned " + args[1] + " in " + args[0];
        case "UnbannedMany":
            args[1].forEach(a => state.bans.delete(key(args[0], a)));
            return "unbanned " + args[1].length + " addresses in " + args[0];
        }
        return null;
    }

    let renderTimer = null;
    function scheduleRender() {
        if (renderTimer === null)
            renderTimer = window.setTimeout(() => { renderTimer = null; renderBans() }, 100);
    }

    // One collator for every comparison: localeCompare with options builds
    // one per call (3 s to sort 100,000 addresses; with this, 0.1-0.2 s).
    const collator = new Intl.Collator(undefined, { numeric: true });

    function compare(a, b) {
        const k = state.sortKey;
        let r;
        if (k === "start" || k === "expires") {
            // A permanent ban (expires 0) sorts as the latest.
            const x = k === "expires" && !a[k] ? Infinity : a[k];
            const y = k === "expires" && !b[k] ? Infinity : b[k];
            r = x === y ? 0 : (x < y ? -1 : 1);
        } else {
            r = collator.compare(a[k], b[k]);
        }
        return state.sortDesc ? -r : r;
    }

    function renderBans() {
        const q = state.search.trim().toLowerCase();
        let rows = Array.from(state.bans.values());
        if (q)
            rows = rows.filter(b => b.address.toLowerCase().includes(q) || b.jail.toLowerCase().includes(q) || b.reason.toLowerCase().includes(q));
        rows.sort(compare);
        const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
        state.page = Math.min(state.page, pages - 1);
        const shown = rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);

        const body = $("bans").tBodies[0];
        body.textContent = "";
        for (const b of shown) {
            const tr = el("tr");
            tr.dataset.address = b.address;
            tr.dataset.jail = b.jail;
            tr.append(el("td", b.address), el("td", b.jail), el("td", when(b.start)), el("td", when(b.expires)), el("td", b.reason));
            const td = el("td");
            const btn = el("button", "Unban", "admin unban");
            btn.type = "button";
            btn.disabled = !state.admin;
            btn.addEventListener("click", () => unban(b.jail, b.address, btn));
            td.appendChild(btn);
            tr.appendChild(td);
            body.appendChild(tr);
        }
        if (shown.length === 0)
            body.appendChild(el("tr")).appendChild(el("td", q ? "No ban matches." : "No bans in force.")).colSpan = 6;
        $("ban-count").textContent = "(" + rows.length + (q ? " of " + state.bans.size : "") + ")";
        $("page").textContent = "page " + (state.page + 1) + " of " + pages;
        $("prev").disabled = state.page === 0;
        $("next").disabled = state.page >= pages - 1;
        for (const th of $("bans").tHead.querySelectorAll("th.sortable")) {
            th.classList.toggle("sorted-asc", th.dataset.key === state.sortKey && !state.sortDesc);
            th.classList.toggle("sorted-desc", th.dataset.key === state.sortKey && state.sortDesc);
        }
    }

    /* Changing calls: the daemon decides; a refusal shows its text. */

    function unban(jail, address, btn) {
        showError("");
        btn.disabled = true;
        client.call(MANAGER_PATH, MANAGER, "UnbanJail", [jail, address], { type: "ss" })
                .then(([n]) => { if (n === 0) showError(address + " was not banned in " + jail) })
                .catch(ex => { showError("Unban refused: " + ex.message); btn.disabled = false });
    }

    function ban(ev) {
        ev.preventDefault();
        showError("");
        const jail = $("ban-jail").value;
        const address = $("ban-address").value.trim();
        const secs = Math.max(0, Math.round(Number($("ban-amount").value) * Number($("ban-unit").value)));
        client.call(MANAGER_PATH, MANAGER, "Ban", [jail, address, secs], { type: "sst" })
                .then(() => { $("ban-address").value = "" })
                .catch(ex => showError("Ban refused: " + ex.message));
    }

    function init() {
        client = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });
        client.addEventListener("owner", (ev, owner) => {
            const was = state.running;
            state.running = !!owner;
            renderState();
            if (state.running && !was) {
                loadManager();
                loadBans();
                loadHistory();
            }
            if (!state.running) {
                state.bans.clear();
                scheduleRender();
            }
        });
        client.addEventListener("close", (ev, options) => {
            state.running = false;
            renderState();
            showError("Connection to the system bus closed" + (options && options.problem ? ": " + options.problem : ""));
        });

        client.subscribe({ interface: "org.freedesktop.DBus.Properties", member: "PropertiesChanged", path: MANAGER_PATH },
                         (path, iface, signal, [name, changed]) => { if (name === MANAGER) setManager(changed) });

        jails = client.proxies(JAIL, MANAGER_PATH);
        state.jails = jails;
        for (const ev of ["added", "changed", "removed"])
            jails.addEventListener(ev, renderJails);

        client.subscribe({ interface: MANAGER, path: MANAGER_PATH }, onSignal);

        permission = cockpit.permission({ admin: true });
        const perm = () => { state.admin = !!permission.allowed; renderState(); renderBans() };
        permission.addEventListener("changed", perm);

        $("ban-form").addEventListener("submit", ban);
        $("search").addEventListener("input", ev => { state.search = ev.target.value; state.page = 0; scheduleRender() });
        $("prev").addEventListener("click", () => { state.page--; renderBans() });
        $("history-jail").addEventListener("change", ev => { state.historyJail = ev.target.value; state.historyPage = 0; loadHistory() });
        $("history-prev").addEventListener("click", () => { state.historyPage = Math.max(0, state.historyPage - 1); loadHistory() });
        $("history-next").addEventListener("click", () => { state.historyPage++; loadHistory() });
        $("next").addEventListener("click", () => { state.page++; renderBans() });
        for (const th of $("bans").tHead.querySelectorAll("th.sortable")) {
            th.addEventListener("click", () => {
                if (state.sortKey === th.dataset.key)
                    state.sortDesc = !state.sortDesc;
                else
                    state.sortKey = th.dataset.key, state.sortDesc = false;
                renderBans();
            });
        }
        renderState();
        renderJails();
        renderBans();
        cockpit.transport.wait(() => document.body.removeAttribute("hidden"));
    }

    document.addEventListener("DOMContentLoaded", init);
}());
