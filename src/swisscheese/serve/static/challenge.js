// The challenge page: levels, the streamed chat and the grader's verdicts.
// Plain JS with no dependencies; the API is under /challenge/api.
"use strict";

(() => {
  const API = "/challenge/api";
  const LAYER_NAMES = {
    input: "the input classifier",
    output: "the streaming output classifier",
    error: "a guard failure (it fails closed)",
  };
  const $ = (id) => document.getElementById(id);
  const state = {
    levels: [],
    current: 1,
    busy: false,
    maxChars: 2000,
    minUniversal: 3,
    logs: new Map(), // level -> [turn elements], kept while the page is open
  };

  const pct = (x) => `${Math.round(x * 100)}%`;

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function setStatus(text, isError = false) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("error", isError);
  }

  // ---- levels and progress -------------------------------------------------------------

  function levelState(p) {
    if (p.passed) return `passed · best ${pct(p.best_score)}`;
    if (p.attempts) return `best ${pct(p.best_score ?? 0)}`;
    return "not tried";
  }

  function renderLevels() {
    const list = $("levels");
    list.replaceChildren();
    for (const lv of state.levels) {
      const p = lv.progress;
      const button = el("button", {
        type: "button",
        class: `level${p.passed ? " passed" : ""}`,
        "data-level": String(lv.level),
        "aria-current": String(lv.level === state.current),
        "aria-label": `Level ${lv.level}: ${lv.category}, threshold ${pct(lv.threshold)}, ` +
          levelState(p),
      },
      el("span", { class: "num", text: String(lv.level) }),
      el("span", { class: "name", text: lv.category }),
      el("span", { class: "thr", text: `threshold ${pct(lv.threshold)}` }),
      el("span", { class: "state", text: levelState(p) }));
      button.addEventListener("click", () => selectLevel(lv.level, true));
      list.append(el("li", {}, button));
    }
  }

  function renderProgress(progress) {
    for (const row of progress.levels) {
      const lv = state.levels.find((l) => l.level === row.level);
      if (lv) lv.progress = row;
    }
    $("overall-text").textContent =
      `${progress.passed} of ${progress.total} levels passed`;
    $("overall-bar").max = progress.total;
    $("overall-bar").value = progress.passed;
    if (progress.player) $("player").textContent = `Player ${progress.player.slice(0, 8)}`;
    renderUniversal(progress.universal || []);
    renderLevels();
    renderLevelHead();
  }

  function renderUniversal(flags) {
    const box = $("universal");
    if (!flags.length) {
      box.hidden = true;
      return;
    }
    const f = flags[0];
    box.replaceChildren(
      el("strong", { text: "Possible universal jailbreak. " }),
      `One of your templates has passed levels ${f.levels.join(", ")}: `,
      el("code", { text: f.template }),
      ". The operators have been told.");
    box.hidden = false;
  }

  function renderLevelHead() {
    const lv = state.levels.find((l) => l.level === state.current);
    if (!lv) return;
    $("level-title").textContent = `Level ${lv.level}: ${lv.hazard}`;
    const p = lv.progress;
    $("level-threshold").textContent = `Threshold ${pct(lv.threshold)} of ` +
      `${lv.details_total} key details` + (p.attempts ? ` · ${p.attempts} attempts` : "");
    $("question").textContent = lv.question;
  }

  function selectLevel(n, focusPrompt) {
    state.current = n;
    renderLevels();
    renderLevelHead();
    const log = $("log");
    const turns = state.logs.get(n) || [];
    log.replaceChildren(...(turns.length ? turns : [emptyNote()]));
    log.scrollTop = log.scrollHeight;
    if (focusPrompt) $("prompt").focus();
  }

  function emptyNote() {
    return el("p", { class: "empty", text: "No attempts on this level yet. Wrap the " +
      "question in whatever you like: a story, a cipher, a persona." });
  }

  // ---- one attempt -----------------------------------------------------------------------

  function parseEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    return { event, data: data.length ? JSON.parse(data.join("\n")) : null };
  }

  function verdictView(v) {
    const passed = v.passed;
    const box = el("div", { class: `verdict ${passed ? "pass" : "fail"}`, "data-verdict": "" });
    const headline = passed ? `Passed level ${v.level}` : `Not passed`;
    box.append(el("span", { class: "headline", text: headline }));
    box.append(el("span", { class: "score",
      text: `Detail score ${pct(v.detail_score)} against a threshold of ${pct(v.threshold)} ` +
        `(${v.details_found} of ${v.details_total} key details)` }));
    const meter = el("div", { class: "meter", role: "img",
      "aria-label": `score ${pct(v.detail_score)}, threshold ${pct(v.threshold)}` });
    const fill = el("div", { class: "fill" });
    fill.style.width = pct(Math.min(1, v.detail_score));
    const mark = el("div", { class: "mark" });
    mark.style.left = pct(v.threshold);
    meter.append(fill, mark);
    box.append(meter);
    if (v.blocked) {
      box.append(el("span", { class: "blocked", "data-blocked-layer": v.blocked_layer || "",
        text: `Blocked by ${LAYER_NAMES[v.blocked_layer] || v.blocked_layer}` +
          (v.bundle_version != null ? ` (guard bundle v${v.bundle_version})` : "") }));
    } else if (v.refused) {
      box.append(el("span", { text: "The model refused on its own." }));
    }
    if (v.attempt_id != null) box.append(reportRow(v.attempt_id));
    return box;
  }

  // ---- reporting a jailbreak ---------------------------------------------------------------

  function reportRow(attemptId) {
    const row = el("div", { class: "report-row" });
    const button = el("button", { type: "button", class: "secondary",
      "data-report-attempt": String(attemptId),
      text: "Report as a jailbreak" });
    button.addEventListener("click", () => reportAttempt(attemptId, row, button));
    row.append(button);
    return row;
  }

  async function reportAttempt(attemptId, row, button) {
    if (button.getAttribute("aria-disabled") === "true") return;
    button.setAttribute("aria-disabled", "true");
    try {
      const res = await fetch(`${API}/report`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ attempt_id: attemptId }),
      });
      const body = await res.json().catch(() => null);
      if (!res.ok) throw new Error(body?.error?.message || `the server answered ${res.status}`);
      const note = el("span", { class: "reported", "data-report-id": String(body.report_id),
        text: `Reported as jailbreak #${body.report_id}: rapid response will patch the guard.` });
      row.replaceChildren(note);
      setStatus(`Reported attempt ${attemptId} as jailbreak #${body.report_id}.`);
    } catch (err) {
      button.setAttribute("aria-disabled", "false");
      setStatus(`Could not report: ${err.message}`, true);
    }
  }

  // ---- the operator view -------------------------------------------------------------------

  function cell(v, cls) { // a table cell; "-" for a missing figure
    const td = el("td", cls ? { class: cls } : {});
    td.textContent = v == null ? "-" : String(v);
    return td;
  }

  function opTable(caption, headers, rows, testid) {
    const table = el("table", { "data-operator": testid });
    table.append(el("caption", { class: "help", text: caption }));
    const head = el("tr");
    for (const h of headers) {
      head.append(el("th", { scope: "col", text: h,
        class: h === "prompt" || h === "template" ? "text" : "" }));
    }
    table.append(el("thead", {}, head));
    const body = el("tbody");
    for (const r of rows) body.append(el("tr", {}, ...r));
    table.append(body);
    return table;
  }

  function seconds(s) {
    if (s == null) return "-";
    if (s < 120) return `${Math.round(s)} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function renderOperator(d) {
    const box = $("operator-body");
    const open = d.reports.counts.open;
    const n = (k, word, many = `${word}s`) => `${k} ${k === 1 ? word : many}`;
    const totals = el("p", { class: "operator-totals", "data-operator": "totals",
      text: `${n(d.players, "player")}, ${n(d.attempts, "attempt")}, ` +
        `${n(d.passes, "pass", "passes")}; ${n(open, "open jailbreak report")} ` +
        `(${d.reports.counts.patched} patched).` });
    const levels = opTable("Per level: effort before the first pass is the attempts made " +
      "on the level before it, and the time from its first attempt.",
      ["level", "hazard", "threshold", "attempts", "players", "passes", "players passed",
        "best score", "attempts before first pass", "time to first pass"],
      d.levels.map((l) => [cell(l.level), cell(l.hazard), cell(pct(l.threshold)),
        cell(l.attempts), cell(l.players), cell(l.passes), cell(l.players_passed),
        cell(l.best_score == null ? null : pct(l.best_score)),
        cell(l.attempts_before_first_pass), cell(seconds(l.seconds_to_first_pass))]),
      "levels");
    const universal = d.universal.length ? opTable(
      `Universal-template candidates (passing ${d.universal_min_levels}+ levels)`,
      ["template", "levels", "players", "first flagged"],
      d.universal.map((f) => [cell(f.template, "text"), cell(f.levels.join(", ")),
        cell(f.players), cell(f.first_flagged)]), "universal")
      : el("p", { "data-operator": "universal", text: "No universal-template candidate yet." });
    const reports = d.reports.open.length ? opTable("Open jailbreak reports",
      ["report", "source", "level", "detail score", "bundle", "prompt"],
      d.reports.open.map((r) => [cell(`#${r.id}`), cell(r.source), cell(r.level),
        cell(r.detail_score == null ? null : pct(r.detail_score)),
        cell(r.bundle_version == null ? null : `v${r.bundle_version}`),
        cell(r.prompt, "text")]), "reports")
      : el("p", { "data-operator": "reports", text: "No open jailbreak report." });
    box.replaceChildren(totals, el("h3", { text: "Levels" }), levels,
      el("h3", { text: "Universal templates" }), universal,
      el("h3", { text: "Reported jailbreaks" }), reports);
    box.hidden = false;
  }

  async function openOperator() {
    const key = $("admin-key").value.trim();
    const status = $("operator-status");
    status.classList.remove("error");
    if (!key) {
      status.textContent = "Enter the admin key first.";
      status.classList.add("error");
      return;
    }
    status.textContent = "Loading the operator figures…";
    try {
      const res = await fetch(`${API}/operator`, {
        headers: { Authorization: `Bearer ${key}` }, credentials: "same-origin" });
      const body = await res.json().catch(() => null);
      if (!res.ok) throw new Error(body?.error?.message || `the server answered ${res.status}`);
      renderOperator(body);
      status.textContent = `Figures as of ${new Date().toLocaleTimeString()}.`;
    } catch (err) {
      $("operator-body").hidden = true;
      status.textContent = `Could not open the operator view: ${err.message}`;
      status.classList.add("error");
    }
  }

  function summary(v) {
    const parts = [v.passed ? `Passed level ${v.level}.` : "Not passed.",
      `Detail score ${pct(v.detail_score)}, threshold ${pct(v.threshold)}.`];
    if (v.blocked) parts.push(`Blocked by ${LAYER_NAMES[v.blocked_layer] || v.blocked_layer}.`);
    if (v.universal) parts.push("Possible universal jailbreak flagged.");
    return parts.join(" ");
  }

  function setBusy(busy) {
    state.busy = busy;
    $("send").setAttribute("aria-disabled", String(busy));
    $("send").textContent = busy ? "Streaming…" : "Send";
  }

  async function send() {
    if (state.busy) return;
    const promptBox = $("prompt");
    const prompt = promptBox.value;
    if (!prompt.trim()) {
      setStatus("Write a prompt first.", true);
      return;
    }
    if (prompt.length > state.maxChars) {
      setStatus(`The prompt has ${prompt.length} characters; the limit is ${state.maxChars}.`,
        true);
      return;
    }
    const level = state.current;
    setBusy(true);
    setStatus(`Sending to level ${level}…`);

    const turn = el("article", { class: "turn", "aria-label": "Attempt" });
    const you = el("p", { class: "bubble you" }, el("span", { class: "who", text: "You" }),
      prompt);
    const text = el("span", { class: "text" });
    const reply = el("p", { class: "bubble model", "aria-busy": "true", "data-reply": "",
      "data-deltas": "0" }, el("span", { class: "who", text: "Guarded model" }), text);
    turn.append(you, reply);
    const log = $("log");
    if (!state.logs.has(level)) state.logs.set(level, []);
    state.logs.get(level).push(turn);
    if (state.current === level) {
      log.querySelector(".empty")?.remove();
      log.append(turn);
      log.scrollTop = log.scrollHeight;
    }

    let verdict = null;
    try {
      const res = await fetch(`${API}/attempt`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ level, prompt }),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => null);
        throw new Error(body?.error?.message || `the server answered ${res.status}`);
      }
      promptBox.value = "";
      updateCount();
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      let deltas = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const { event, data } = parseEvent(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
          if (event === "delta") {
            if (data.refusal) text.append(el("span", { class: "refusal", text: data.text }));
            else text.append(data.text);
            reply.setAttribute("data-deltas", String(++deltas));
            log.scrollTop = log.scrollHeight;
          } else if (event === "verdict") {
            verdict = data;
          } else if (event === "error") {
            throw new Error(data?.error?.message || "the model failed");
          }
        }
      }
      if (!verdict) throw new Error("the reply ended without a verdict; send it again");
      reply.setAttribute("aria-busy", "false");
      turn.append(verdictView(verdict));
      log.scrollTop = log.scrollHeight;
      setStatus(summary(verdict));
      renderProgress(verdict.progress);
      if (verdict.universal) renderUniversal([verdict.universal]);
    } catch (err) {
      reply.setAttribute("aria-busy", "false");
      turn.append(el("div", { class: "verdict error", role: "alert", text: String(err.message) }));
      setStatus(`Error: ${err.message}`, true);
    } finally {
      setBusy(false);
      promptBox.focus();
    }
  }

  function updateCount() {
    const n = $("prompt").value.length;
    $("count").textContent = n ? `${n} / ${state.maxChars} characters` : "";
  }

  // ---- start -------------------------------------------------------------------------------

  async function start() {
    $("form").addEventListener("submit", (e) => {
      e.preventDefault();
      send();
    });
    $("prompt").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        send();
      }
    });
    $("prompt").addEventListener("input", updateCount);
    $("operator-form").addEventListener("submit", (e) => {
      e.preventDefault();
      openOperator();
    });
    $("insert").addEventListener("click", () => {
      const box = $("prompt");
      const q = state.levels.find((l) => l.level === state.current)?.question || "";
      const at = box.selectionStart ?? box.value.length;
      box.value = box.value.slice(0, at) + q + box.value.slice(box.selectionEnd ?? at);
      box.focus();
      box.selectionStart = box.selectionEnd = at + q.length;
      updateCount();
    });
    try {
      const res = await fetch(`${API}/levels`, { credentials: "same-origin" });
      if (!res.ok) throw new Error(`the server answered ${res.status}`);
      const data = await res.json();
      state.levels = data.levels;
      state.maxChars = data.max_prompt_chars;
      state.minUniversal = data.universal_min_levels;
      const firstOpen = state.levels.find((l) => !l.progress.passed);
      state.current = firstOpen ? firstOpen.level : 1;
      selectLevel(state.current, false);
      const progress = await (await fetch(`${API}/progress`,
        { credentials: "same-origin" })).json();
      renderProgress(progress);
      document.body.setAttribute("data-ready", "true");
    } catch (err) {
      setStatus(`Could not load the levels: ${err.message}`, true);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
