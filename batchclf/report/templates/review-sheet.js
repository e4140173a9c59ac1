"use strict";
// The review station: see batchclf/report/html.py. Item data comes from the JSON blocks (script.items, never run);
// cards are built with the DOM API (textContent, never innerHTML), one page of them at a time.
(() => {
  const grid = document.getElementById("grid");
  if (!grid) return;
  const PAGE = 60; // cards drawn at once: 10,000 cards stay quick because only one page is ever in the DOM
  const STORE = "batchclf-review:" + grid.dataset.sheet;
  const VIEWS = ["job", "label", "confidence", "reason"];
  const KIND_RANK = { failed: 0, "not-a-digit": 1, "low-confidence": 2 };
  const KIND_NAME = { failed: "failed", "not-a-digit": "not a digit", "low-confidence": "low confidence" };
  const DECISION_TEXT = { accepted: "accepted", corrected: "corrected", "not-a-digit": "not a digit", blank: "blank" };

  const items = [];
  const unreadable = [];
  document.querySelectorAll("script.items").forEach((block) => {
    const job = block.dataset.job;
    let data = [];
    try {
      data = JSON.parse(block.textContent);
    } catch (error) {
      unreadable.push(job); // said in the message line; the other jobs still work
    }
    for (const item of data) {
      item.job = job;
      item.id = job + "#" + item.row; // results.csv only grows: a row number stays the row's
      item.order = items.length;
      items.push(item);
    }
  });

  const progress = document.getElementById("progress");
  const pager = document.getElementById("pager");
  const message = document.getElementById("message");
  const filter = document.getElementById("filter");
  const viewButtons = Array.from(document.querySelectorAll(".views button"));

  // -- state kept in local storage, keyed by the sheet's jobs ----------------------------------------
  // The sheet may be open in two tabs (opened twice from a mail, a duplicated tab): both write this one key.
  // Every write first merges what is stored, and a tab merges what another one wrote (the storage event), card by
  // card: the later change wins, a decision or its removal (undo, Clear), so neither tab's decisions are lost.
  // ``t`` is when a card's decision last changed in any tab (an undo that restores an older decision changes it
  // now); ``at`` stays when the person decided, which corrections.csv reports.  ``removed``: id -> when it was undone.
  // View, current card and undo history stay each tab's own.
  const fresh = () => ({ v: 1, decisions: {}, removed: {}, undo: [], view: "job", current: null, savedAt: null, unsaved: 0 });
  let storageWorks = true;
  const parse = (text) => {
    const kept = JSON.parse(text || "null");
    if (kept && kept.v === 1 && kept.decisions && Array.isArray(kept.undo)) return Object.assign(fresh(), kept);
    return null;
  };
  const load = () => {
    try {
      return parse(localStorage.getItem(STORE)) || fresh();
    } catch (error) {
      storageWorks = false;
    }
    return fresh();
  };
  let state = load();
  const known = new Set(items.map((item) => item.id));
  const changed = (decided) => decided.t || Date.parse(decided.at) || 0; // kept before merging came: its decision time
  const merge = (theirs) => {
    // Card by card, the later change of the two tabs wins (a tie keeps this tab's).
    const ids = new Set([...Object.keys(theirs.decisions), ...Object.keys(theirs.removed || {})]);
    for (const id of ids) {
      if (!known.has(id)) continue;
      const mine = state.decisions[id] ? changed(state.decisions[id]) : state.removed[id] || 0;
      const other = theirs.decisions[id] ? changed(theirs.decisions[id]) : theirs.removed[id] || 0;
      if (other <= mine) continue;
      if (theirs.decisions[id]) {
        state.decisions[id] = theirs.decisions[id];
        delete state.removed[id];
      } else {
        delete state.decisions[id];
        state.removed[id] = other;
      }
    }
    // A save in the other tab wrote every decision it knew, which (merged) were this tab's too.
    if (theirs.savedAt && (!state.savedAt || theirs.savedAt > state.savedAt)) {
      state.savedAt = theirs.savedAt;
      state.unsaved = theirs.unsaved;
    }
  };
  const persist = () => {
    try {
      const stored = parse(localStorage.getItem(STORE));
      if (stored) merge(stored);
      localStorage.setItem(STORE, JSON.stringify(state));
      storageWorks = true;
    } catch (error) {
      storageWorks = false; // full or refused: the page warns before it is closed
    }
  };
  for (const id of Object.keys(state.decisions)) if (!known.has(id)) delete state.decisions[id];
  for (const id of Object.keys(state.removed)) if (!known.has(id)) delete state.removed[id];

  // -- views: an order, a group per item, a filter ----------------------------------------------------
  const confidence = (item) => (item.conf === null ? -1 : item.conf);
  const labelRank = (item) => (item.label === null ? 10 : item.label);
  const ORDER = {
    job: (a, b) => a.order - b.order,
    label: (a, b) => labelRank(a) - labelRank(b) || confidence(a) - confidence(b) || a.order - b.order,
    confidence: (a, b) => confidence(a) - confidence(b) || a.order - b.order,
    reason: (a, b) => KIND_RANK[a.kind] - KIND_RANK[b.kind] || confidence(a) - confidence(b) || a.order - b.order,
  };
  const GROUP = {
    job: (item) => "job " + item.job,
    label: (item) => (item.label === null ? "no label" : "label " + item.label),
    confidence: () => "lowest confidence first",
    reason: (item) => KIND_NAME[item.kind],
  };
  let view = VIEWS.includes(state.view) ? state.view : "job";
  let list = [];
  let groupSizes = new Map();
  let current = 0;
  let drawnPage = -1;
  const cards = new Map(); // id -> card element of the drawn page

  const rebuild = (keepId, scroll = true) => {
    const needle = filter.value.trim().toLowerCase();
    list = items.filter((item) => !needle || item.file.toLowerCase().includes(needle)).sort(ORDER[view]);
    groupSizes = new Map();
    for (const item of list) {
      const group = GROUP[view](item);
      groupSizes.set(group, (groupSizes.get(group) || 0) + 1);
    }
    const kept = list.findIndex((item) => item.id === keepId);
    current = kept >= 0 ? kept : 0;
    drawnPage = -1;
    viewButtons.forEach((button) => button.setAttribute("aria-pressed", String(button.dataset.view === view)));
    show(scroll);
  };

  // -- cards --------------------------------------------------------------------------------------------
  const element = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  };
  const picture = (uri, note, caption, classes, alt) => {
    const figure = element("figure");
    if (uri) {
      const image = element("img", classes);
      image.alt = alt;
      image.decoding = "async";
      image.src = uri;
      figure.append(image);
    } else {
      figure.append(element("div", "placeholder", note));
    }
    figure.append(element("figcaption", null, caption));
    return figure;
  };
  const card = (item) => {
    const node = element("article", "card " + item.status);
    node.dataset.id = item.id;
    const pictures = element("div", "pictures");
    pictures.append(
      picture(item.original, item.note, "original", "thumb" + (item.small ? " pixelated" : ""), "original image"),
      picture(item.seen, item.note, "model saw (28×28)", "thumb seen pixelated", "the 28×28 the model saw"),
    );
    const file = element("p", "file");
    file.title = item.shown;
    file.append(element("bdi", null, item.shown)); // isolated: a right-to-left name cannot reorder what follows
    const facts = element("p", "facts");
    if (item.page !== null) facts.append("page " + item.page + " · ");
    if (item.label !== null) {
      facts.append("label ", element("span", "label", String(item.label)), " " + item.confidence + " ");
      if (item.second_label !== null) facts.append(element("span", "muted", "· 2nd " + item.second_label + " " + item.second_confidence));
    } else {
      facts.append(element("span", "muted", "no label"));
    }
    const reason = element("p", "reason");
    reason.append(element("span", "badge", item.status), element("bdi", null, item.reason));
    node.append(pictures, file, facts, reason);
    if (item.changed) node.append(element("p", "warning", "The file has changed since it was classified."));
    node.append(element("p", "decision"));
    paint(node, item);
    return node;
  };
  const paint = (node, item) => {
    const decided = state.decisions[item.id];
    node.classList.remove("accepted", "corrected", "not-a-digit", "blank");
    const line = node.querySelector(".decision");
    line.replaceChildren();
    if (!item.original) {
      line.textContent = "nothing to judge: no image";
    } else if (!decided) {
      line.textContent = item.label === null ? "to do: type the digit, n or b" : "to do: Enter accepts " + item.label;
    } else {
      node.classList.add(decided.decision);
      line.append(DECISION_TEXT[decided.decision]);
      if (decided.label !== null) line.append(" ", element("b", null, String(decided.label)));
      if (decided.decision === "corrected" && item.label !== null) line.append(" (model " + item.label + ")");
    }
  };

  const draw = (page) => {
    const start = page * PAGE;
    const fragment = document.createDocumentFragment();
    cards.clear();
    let group = null;
    for (const item of list.slice(start, start + PAGE)) {
      const name = GROUP[view](item);
      if (view !== "confidence" && name !== group) {
        const heading = element("h3", "group", name);
        const size = groupSizes.get(name);
        heading.append(element("span", "count", " · " + size.toLocaleString("en") + (size === 1 ? " item" : " items")));
        fragment.append(heading);
      }
      group = name;
      const node = card(item);
      cards.set(item.id, node);
      fragment.append(node);
    }
    if (!list.length) fragment.append(element("p", "nothing", items.length ? "No file name matches the filter." : "Nothing to review."));
    grid.replaceChildren(fragment);
    drawnPage = page;
  };

  const show = (scroll = true) => {
    current = Math.max(0, Math.min(current, list.length - 1));
    const page = Math.floor(current / PAGE);
    if (page !== drawnPage) draw(page);
    grid.querySelectorAll(".card.current").forEach((node) => node.classList.remove("current"));
    const item = list[current];
    const node = item && cards.get(item.id);
    if (node) {
      node.classList.add("current");
      if (scroll) node.scrollIntoView({ block: "nearest" });
    }
    state.view = view;
    state.current = item ? item.id : null;
    persist(); // every move and decision: a reload or a crash resumes exactly here
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    pager.textContent = list.length ? "item " + (current + 1).toLocaleString("en") + " of " + list.length.toLocaleString("en") + " · page " + (page + 1) + " of " + pages : "";
    announce();
  };

  // -- progress: done / to do, time per item -----------------------------------------------------------
  const stamps = []; // this session's decision times: the time per item is the median gap between them
  const perItem = () => {
    const gaps = stamps.slice(1).map((time, k) => time - stamps[k]).filter((gap) => gap < 120000).sort((a, b) => a - b);
    return gaps.length ? gaps[Math.floor(gaps.length / 2)] / 1000 : null;
  };
  const judgeable = items.filter((item) => item.original).length;
  const announce = () => {
    const done = Object.keys(state.decisions).length;
    const seconds = perItem();
    let text = "Done " + done.toLocaleString("en") + " · to do " + (judgeable - done).toLocaleString("en");
    if (seconds !== null) text += " · " + seconds.toFixed(1) + " s per item";
    if (state.unsaved) text += " · " + state.unsaved.toLocaleString("en") + " not saved";
    else if (state.savedAt) text += " · saved";
    if (!storageWorks) text += " · not kept if the page closes (the browser refuses local storage)";
    progress.textContent = text;
  };
  let messageTimer = 0;
  const say = (text) => {
    message.textContent = text;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => (message.textContent = ""), 4000);
  };

  // -- decisions and undo ---------------------------------------------------------------------------------
  const record = (targets, decisions) => {
    const at = new Date().toISOString();
    state.undo.push({ ids: targets.map((item) => item.id), before: targets.map((item) => state.decisions[item.id] || null) });
    if (state.undo.length > 1000) state.undo.splice(0, state.undo.length - 1000);
    const t = Date.now();
    targets.forEach((item, k) => {
      state.decisions[item.id] = Object.assign({ at, t }, decisions[k]);
      delete state.removed[item.id];
    });
    state.unsaved += targets.length;
    stamps.push(Date.now());
    for (const item of targets) {
      const node = cards.get(item.id);
      if (node) paint(node, item);
    }
  };
  const decide = (what) => {
    const item = list[current];
    if (!item) return;
    if (!item.original) {
      say("Nothing to judge here: the image is not there");
    } else if (what === "accept" && item.label === null) {
      say("No label to accept: type the digit, n or b");
      return;
    } else if (what === "accept") {
      record([item], [{ label: item.label, decision: "accepted" }]);
    } else if (typeof what === "number") {
      record([item], [{ label: what, decision: what === item.label ? "accepted" : "corrected" }]);
    } else {
      record([item], [{ label: null, decision: what }]);
    }
    current += 1;
    if (current >= list.length) {
      current = list.length - 1;
      say("That was the last item of this view");
    }
    show();
  };
  const acceptGroup = () => {
    if (view !== "label") {
      say("Group accept works in the By label view (press v)");
      return;
    }
    const item = list[current];
    if (!item || item.label === null) return;
    const group = list.filter((other) => other.label === item.label && other.original && !state.decisions[other.id]);
    if (!group.length) {
      say("Every item of label " + item.label + " is decided");
      return;
    }
    record(group, group.map(() => ({ label: item.label, decision: "accepted" })));
    say("Accepted " + group.length + " of label " + item.label);
    const next = list.findIndex((other, k) => k > current && other.label !== item.label);
    current = next >= 0 ? next : current;
    show();
  };
  const undo = () => {
    const last = state.undo.pop();
    if (!last) {
      say("Nothing to undo");
      return;
    }
    const t = Date.now(); // the undo is the card's latest change: another tab's merge must not bring the undone back
    last.ids.forEach((id, k) => {
      if (last.before[k]) {
        state.decisions[id] = Object.assign({}, last.before[k], { t });
        delete state.removed[id];
      } else {
        delete state.decisions[id];
        state.removed[id] = t;
      }
      const node = cards.get(id);
      if (node) paint(node, items.find((item) => item.id === id));
    });
    state.unsaved = Math.max(0, state.unsaved - last.ids.length);
    const back = list.findIndex((item) => item.id === last.ids[0]);
    if (back >= 0) current = back;
    show();
  };

  // -- saving: corrections.csv ------------------------------------------------------------------------------
  // RFC 4180: quote a field holding a quote, comma or line break; double the quotes.
  const field = (value) => {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  };
  const save = () => {
    const rows = items
      .filter((item) => state.decisions[item.id])
      .map((item) => {
        const decided = state.decisions[item.id];
        return [item.file, item.page, decided.label, decided.decision, decided.at, item.job];
      });
    if (!rows.length) {
      say("Nothing to save yet: decide an item first");
      return;
    }
    const header = ["file", "page", "label", "decision", "decided_at", "job"];
    const text = [header, ...rows].map((row) => row.map(field).join(",")).join("\r\n") + "\r\n";
    const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = "corrections.csv";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    state.unsaved = 0;
    state.savedAt = new Date().toISOString();
    persist();
    announce();
  };
  const clear = () => {
    try {
      const stored = parse(localStorage.getItem(STORE)); // what another tab decided is forgotten too
      if (stored) merge(stored);
    } catch (error) {
      storageWorks = false;
    }
    const count = Object.keys(state.decisions).length;
    if (count && !window.confirm("Forget all " + count + " decisions of this sheet?")) return;
    // Every card's decision removed now (not the key dropped): a tab still open elsewhere merges the removal too.
    const t = Date.now();
    const removed = {};
    for (const id of Object.keys(state.decisions)) removed[id] = t;
    state = Object.assign(fresh(), { view, removed });
    try {
      localStorage.setItem(STORE, JSON.stringify(state));
    } catch (error) {
      storageWorks = false;
    }
    draw(Math.floor(current / PAGE));
    show();
  };

  // -- keys --------------------------------------------------------------------------------------------------
  const columns = () => Math.max(1, getComputedStyle(grid).gridTemplateColumns.split(" ").length);
  const go = (index) => {
    if (!list.length) return;
    current = Math.max(0, Math.min(index, list.length - 1));
    show();
  };
  const KEYS = {
    Enter: () => decide("accept"),
    " ": () => decide("accept"),
    n: () => decide("not-a-digit"),
    b: () => decide("blank"),
    u: undo,
    Backspace: undo,
    a: acceptGroup,
    ArrowRight: () => go(current + 1),
    ArrowLeft: () => go(current - 1),
    ArrowDown: () => go(current + columns()),
    ArrowUp: () => go(current - columns()),
    PageDown: () => go(current + PAGE),
    PageUp: () => go(current - PAGE),
    Home: () => go(0),
    End: () => go(list.length - 1),
    v: () => setView(VIEWS[(VIEWS.indexOf(view) + 1) % VIEWS.length]),
    "/": () => filter.focus(),
  };
  document.addEventListener("keydown", (event) => {
    if (event.target === filter) {
      if (event.key === "Enter" || event.key === "Escape") {
        event.preventDefault();
        filter.blur();
      }
      return;
    }
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
      event.preventDefault();
      save();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof HTMLButtonElement && (event.key === "Enter" || event.key === " ")) return; // the button's own
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (/^[0-9]$/.test(key)) {
      event.preventDefault();
      decide(Number(key));
    } else if (KEYS[key]) {
      event.preventDefault();
      KEYS[key]();
    }
  });
  const setView = (name) => {
    view = name;
    rebuild(list[current] && list[current].id);
  };
  viewButtons.forEach((button) =>
    button.addEventListener("click", () => {
      button.blur(); // keys go back to the cards
      setView(button.dataset.view);
    }),
  );
  filter.addEventListener("input", () => rebuild(list[current] && list[current].id));
  document.getElementById("save").addEventListener("click", (event) => {
    event.currentTarget.blur();
    save();
  });
  document.getElementById("clear").addEventListener("click", (event) => {
    event.currentTarget.blur();
    clear();
  });
  window.addEventListener("storage", (event) => {
    // Another tab of this sheet wrote its state: take its later decisions and removals, and show them.
    if (event.key !== STORE || event.storageArea !== localStorage) return;
    let theirs = null;
    try {
      theirs = parse(event.newValue);
    } catch (error) {
      return; // not ours to read: this tab's next write puts its own state back
    }
    if (!theirs) return;
    merge(theirs);
    for (const [id, node] of cards) paint(node, items.find((item) => item.id === id));
    announce();
    say("Decisions from this sheet open in another tab are merged here");
  });
  window.addEventListener("beforeunload", (event) => {
    if (!storageWorks && state.unsaved) event.preventDefault(); // only when local storage cannot keep them
  });

  rebuild(state.current, false); // opened: the summary on top, the current card marked
  if (unreadable.length) message.textContent = "The cards of " + unreadable.join(", ") + " could not be read";
  grid.dataset.ready = "true"; // for tests and tools: the first page is drawn
})();
