/* The scenario sandbox page: a small CDS Hooks client.
 *
 * It asks this server to build a scenario's request (with what-ifs), POSTs it
 * to the real /cds-services/{id} endpoint, renders the cards as an EHR would,
 * and POSTs real feedback. Every piece of server or card text goes into the
 * page as text nodes; card Markdown goes through SafeMarkdown.
 */
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const INDICATORS = { critical: "Critical", warning: "Warning", info: "Info" };
  const URGENCY = { critical: 0, warning: 1, info: 2 };
  const state = { catalog: null, scenarios: [], current: null, built: null };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // Replace a node's children; null, undefined and false are left out (not shown as text).
  function fill(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pretty = (value) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));

  async function call(method, url, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      // not JSON: keep the text for the raw view
    }
    return { ok: response.ok, status: response.status, body: parsed };
  }

  function setStatus(message) {
    $("status").textContent = message;
  }

  function showError(message, body) {
    const box = $("error");
    const issues = body && body.resourceType === "OperationOutcome" ? body.issue || [] : [];
    fill(box,
      el("p", { class: "error-title", text: message }),
      issues.length
        ? el("ul", {}, issues.map((i) => el("li", { text: i.diagnostics || i.code || "error" })))
        : typeof body === "string" && body ? el("p", { text: body }) : null,
    );
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    fill($("error"));
  }

  // ---------------------------------------------------------------- scenarios

  // "imaging-premature (warning), ..." / "no card" / "HTTP 412": one wording for expected and actual.
  function outcomeText(status, cards) {
    if (status !== 200) return `HTTP ${status}`;
    if (!cards.length) return "no card";
    return cards.map((c) => `${c.rule} (${c.indicator})`).sort().join(", ");
  }

  const expectedText = (scenario) => outcomeText(scenario.expected.status, scenario.expected.cards);

  function showResult(status, cards) {
    const line = $("scenario-result");
    if (state.built.changes.length) {
      line.className = "result";
      line.textContent = "What-ifs applied: the expected outcome above is for the scenario as recorded.";
      return;
    }
    const got = outcomeText(status, cards.map((c) => ({ rule: (c.source && c.source.topic || {}).code, indicator: c.indicator })));
    const want = expectedText(state.current);
    line.className = got === want ? "result result-ok" : "result result-differs";
    line.textContent = got === want ? `Result: ${got}, as expected.` : `Result: ${got}; expected ${want}.`;
  }

  function renderScenarioList() {
    const filter = $("scenario-filter").value.trim().toLowerCase();
    const shown = state.scenarios.filter(
      (s) => !filter || `${s.title} ${s.name} ${expectedText(s)}`.toLowerCase().includes(filter),
    );
    fill($("scenario-list"),
      ...shown.map((s) =>
        el(
          "li",
          {},
          el(
            "button",
            {
              type: "button",
              class: "scenario",
              "data-name": s.name,
              "aria-pressed": state.current && state.current.name === s.name ? "true" : "false",
              onclick: () => selectScenario(s.name),
            },
            el("span", { class: "scenario-title" }, withCode(s.title)),
            el("span", { class: "scenario-meta" },
              `${s.hook} · expected: ${expectedText(s)}`,
              s.profileMatches ? null : ` · written for profile ${s.profile}`),
          ),
        ),
      ),
    );
    $("scenario-count").textContent = `${shown.length} of ${state.scenarios.length} scenarios`;
  }

  function resetWhatIfs() {
    $("order").value = "";
    $("onset").value = "";
    $("pt-weeks").value = "";
    $("red-flag").value = "";
    const hook = state.current ? state.current.hook : "order-select";
    for (const radio of document.querySelectorAll('input[name="hook"]')) radio.checked = radio.value === hook;
  }

  function selectScenario(name) {
    const scenario = state.scenarios.find((s) => s.name === name);
    if (!scenario) return;
    state.current = scenario;
    history.replaceState(null, "", `?scenario=${encodeURIComponent(name)}`);
    fill($("scenario-title"), withCode(scenario.title));
    fill($("scenario-description"), withCode(scenario.description));
    fill($("scenario-expected"),
      el("strong", { text: "Expected: " }),
      expectedText(scenario),
      scenario.profileMatches
        ? null
        : ` (written for the ${scenario.profile} profile; this server runs ${state.catalog.profile}, so the result may differ)`,
    );
    for (const button of document.querySelectorAll(".scenario")) {
      button.setAttribute("aria-pressed", button.dataset.name === name ? "true" : "false");
    }
    resetWhatIfs();
    fire();
  }

  // Each rated order's appropriateness rating, from the systemActions updates that carry it.
  function ratingsOf(body) {
    const actions = Array.isArray(body.systemActions) ? body.systemActions : [];
    return actions.filter((a) => a.type === "update" && a.resource).flatMap((a) =>
      (a.resource.extension || []).filter((e) => e.url === state.catalog.ratingExtension).map((e) =>
        `${((e.valueCodeableConcept || {}).coding || [{}])[0].code} (${a.resource.resourceType}/${a.resource.id})`));
  }

  // Text with `code` spans (scenario titles use them): the spans become <code>, all of it text nodes.
  const withCode = (text) => String(text || "").split("`").map((part, i) => (i % 2 ? el("code", { text: part }) : part));

  // ---------------------------------------------------------------- timeline

  const LANE_RANK = ["episode", "red-flag", "care", "imaging", "surgery", "referral", "draft-order", "other"];
  const laneRank = (lane) => {
    const rank = LANE_RANK.indexOf(lane.split(":")[0]);
    return rank < 0 ? LANE_RANK.length : rank;
  };
  const dayNumber = (iso) => {
    const [y, m, d] = iso.split("-").map(Number);
    return Date.UTC(y, m - 1, d) / 86400000;
  };

  function renderTimelineChart(timeline) {
    const events = timeline.events.filter((e) => e.start);
    const chart = $("timeline-chart");
    if (!events.length) {
      fill(chart, el("p", { class: "muted", text: "No dated events." }));
      return;
    }
    const lanes = [];
    for (const e of [...events].sort((a, b) => laneRank(a.lane) - laneRank(b.lane))) {
      if (!lanes.some((l) => l.key === e.lane)) lanes.push({ key: e.lane, label: e.laneLabel });
    }
    const today = dayNumber(timeline.today);
    const starts = events.map((e) => dayNumber(e.start));
    const from = Math.min(today - 42, ...starts) - 3;
    const to = today + 5;
    const width = 760, left = 210, right = 16, laneHeight = 30, top = 10;
    const height = top + lanes.length * laneHeight + 34;
    const x = (day) => left + ((day - from) / (to - from)) * (width - left - right);
    const root = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, class: "timeline-svg", role: "img",
      "aria-label": "Timeline chart; the table below lists the same events",
    });
    lanes.forEach((lane, i) => {
      const y = top + i * laneHeight + laneHeight / 2;
      root.append(svg("line", { x1: left, x2: width - right, y1: y, y2: y, class: "lane-line" }));
      const label = lane.label.length > 26 ? `${lane.label.slice(0, 25)}…` : lane.label;
      root.append(svg("text", { x: left - 8, y: y + 4, "text-anchor": "end", class: "lane-label" }, label));
    });
    for (const e of events) {
      const i = lanes.findIndex((l) => l.key === e.lane);
      const y = top + i * laneHeight + laneHeight / 2;
      const cls = `mark mark-${e.lane.split(":")[0]}`;
      const tip = `${e.start}${e.end && e.end !== e.start ? ` to ${e.end}` : ""}: ${e.label} (${e.code})`;
      if (e.end && e.end !== e.start) {
        const x1 = x(dayNumber(e.start)), x2 = x(dayNumber(e.end));
        const bar = svg("rect", { x: x1, y: y - 5, width: Math.max(x2 - x1, 3), height: 10, rx: 3, class: cls });
        bar.append(svg("title", {}, tip));
        root.append(bar);
      } else {
        const dot = svg("circle", { cx: x(dayNumber(e.start)), cy: y, r: 6, class: cls });
        dot.append(svg("title", {}, tip));
        root.append(dot);
      }
    }
    const axis = top + lanes.length * laneHeight + 8;
    root.append(svg("line", { x1: x(today), x2: x(today), y1: top, y2: axis, class: "today-line" }));
    const fmt = (day) => new Date(day * 86400000).toISOString().slice(0, 10);
    const ticks = [from + 3, (from + today) / 2, today];
    ticks.forEach((day, i) => {
      const anchor = i === 0 ? "start" : i === ticks.length - 1 ? "end" : "middle";
      const label = i === ticks.length - 1 ? `today ${fmt(day)}` : fmt(Math.round(day));
      root.append(svg("text", { x: x(day), y: axis + 18, "text-anchor": anchor, class: "axis-label" }, label));
    });
    fill(chart, root);
  }

  function renderTimeline(timeline) {
    renderTimelineChart(timeline);
    const rows = timeline.events.map((e) =>
      el("tr", { "data-lane": e.lane },
        el("td", { text: e.start ? (e.end && e.end !== e.start ? `${e.start} to ${e.end}` : e.start) : "undated" }),
        el("td", { text: e.laneLabel }),
        el("td", { text: e.label }),
        el("td", { text: e.code }),
        el("td", { text: [e.status, e.active ? null : "inactive"].filter(Boolean).join(", ") })));
    fill($("timeline-rows"),
      ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, text: "Nothing the pathway reads." }))]),
    );
    const notes = [];
    if (timeline.notChecked.length) notes.push(`Not sent by the EHR, so not checked: ${timeline.notChecked.join(", ")}.`);
    for (const skipped of timeline.skipped) notes.push(`Skipped by the service: ${skipped}.`);
    fill($("timeline-notes"), ...notes.map((n) => el("li", { text: n })));
  }

  // ---------------------------------------------------------------- firing the hook

  function numberOrNull(input) {
    const raw = input.value.trim();
    return raw === "" ? null : Number(raw);
  }

  function selectedHook() {
    const checked = document.querySelector('input[name="hook"]:checked');
    return checked ? checked.value : null;
  }

  function setBusy(busy) {
    $("fire").disabled = busy;
    $("cards-section").setAttribute("aria-busy", busy ? "true" : "false");
  }

  async function fire() {
    if (!state.current) {
      setStatus("Choose a scenario first.");
      return;
    }
    clearError();
    setBusy(true);
    $("orders-effect").hidden = true;
    setStatus("Sending…");
    $("scenario-result").textContent = "";
    try {
      const built = await call("POST", "/sandbox/api/request", {
        scenario: state.current.name,
        hook: selectedHook(),
        order: $("order").value || null,
        onsetDaysAgo: numberOrNull($("onset")),
        ptWeeks: numberOrNull($("pt-weeks")),
        redFlag: $("red-flag").value || null,
      });
      if (!built.ok) {
        setStatus("");
        showError(`The what-if could not be built (HTTP ${built.status}).`, built.body);
        return;
      }
      state.built = built.body;
      renderTimeline(state.built.timeline);
      fill($("changes"),
        ...(state.built.changes.length
          ? state.built.changes.map((c) => el("li", { text: c }))
          : [el("li", { text: "The scenario's request as recorded, with a new hookInstance." })]),
      );
      $("raw-request").textContent = pretty(state.built.request);
      const url = `/cds-services/${encodeURIComponent(state.built.service)}`;
      const answer = await call("POST", url, state.built.request);
      $("raw-response").textContent = pretty(answer.body);
      $("exchange-line").textContent = `POST ${url} (${state.built.hook}) → HTTP ${answer.status}`;
      if (!answer.ok) {
        showResult(answer.status, []);
        fill($("cards"), el("p", { class: "muted", text: "No cards: the service refused the request." }));
        setStatus(`${state.built.hook} sent: HTTP ${answer.status}.`);
        showError(`The service answered HTTP ${answer.status}.`, answer.body);
        return;
      }
      const cards = Array.isArray(answer.body.cards) ? answer.body.cards : [];
      renderCards(cards);
      showResult(answer.status, cards);
      const ratings = ratingsOf(answer.body);
      setStatus(`${state.built.hook} sent to ${state.built.service}: HTTP ${answer.status}, ` +
        `${cards.length} card${cards.length === 1 ? "" : "s"}.` +
        (ratings.length ? ` Appropriateness rating: ${ratings.join("; ")}.` : ""));
    } catch (err) {
      setStatus("");
      showError(`The request failed: ${err}`);
    } finally {
      setBusy(false);
    }
  }

  // ---------------------------------------------------------------- cards

  function linkOrText(label, url, cls) {
    const href = url ? window.SafeMarkdown.safeUrl(url) : null;
    return href
      ? el("a", { href, rel: "noopener noreferrer", target: "_blank", class: cls, text: label })
      : el("span", { class: cls, text: label });
  }

  function renderCards(cards) {
    const sorted = [...cards].sort((a, b) => (URGENCY[a.indicator] ?? 3) - (URGENCY[b.indicator] ?? 3));
    fill($("cards"),
      ...(sorted.length
        ? sorted.map(renderCard)
        : [el("p", { class: "no-cards", text: "No cards: the service stays silent for this order." })]),
    );
  }

  function renderCard(card, index) {
    const indicator = Object.hasOwn(INDICATORS, card.indicator) ? card.indicator : "unknown";
    const id = `card-${index}`;
    const feedback = el("p", { class: "card-feedback", role: "status", "aria-live": "polite" });
    const article = el("article", { class: `card card-${indicator}`, "aria-labelledby": `${id}-summary` });
    const controls = [];

    const source = card.source || {};
    const topic = source.topic ? source.topic.display || source.topic.code : null;
    article.append(
      el("div", { class: "card-head" },
        el("span", { class: "indicator", text: INDICATORS[indicator] || String(card.indicator) }),
        el("h3", { id: `${id}-summary`, class: "card-summary", text: card.summary || "" })),
      el("div", { class: "card-detail" }, window.SafeMarkdown.render(card.detail || "")),
      el("p", { class: "card-source" }, "Source: ", linkOrText(source.label || "unknown", source.url),
        topic ? ` · ${topic}` : null),
    );

    if (Array.isArray(card.links) && card.links.length) {
      article.append(el("div", { class: "card-links" }, el("h4", { text: "Links" }),
        el("ul", {}, card.links.map((link) => el("li", {}, linkOrText(link.label, link.url))))));
    }

    if (Array.isArray(card.suggestions) && card.suggestions.length) {
      const buttons = card.suggestions.map((suggestion) => {
        const button = el("button", {
          type: "button", class: "suggestion", text: suggestion.label,
          onclick: () => accept(card, suggestion, controls, feedback),
        });
        controls.push(button);
        return button;
      });
      const choose = card.selectionBehavior === "any" ? "any" : "at most one";
      article.append(el("div", { class: "card-suggestions" },
        el("h4", { text: `Suggestions (choose ${choose})` }), el("div", { class: "buttons" }, buttons)));
    }

    const reasons = Array.isArray(card.overrideReasons) ? card.overrideReasons : [];
    const reasonSelect = el("select", { id: `${id}-reason` },
      el("option", { value: "", text: reasons.length ? "Choose a reason…" : "No coded reasons offered" }),
      reasons.map((r, i) => el("option", { value: String(i), text: r.display || r.code })));
    const comment = el("input", { id: `${id}-comment`, type: "text", autocomplete: "off" });
    const overrideButton = el("button", {
      type: "button", class: "override", text: "Override",
      onclick: () => override(card, reasons[reasonSelect.value], comment.value.trim(), controls, feedback),
    });
    controls.push(reasonSelect, comment, overrideButton);
    article.append(el("div", { class: "card-override" },
      el("h4", { text: "Override" }),
      el("div", { class: "override-grid" },
        el("label", { for: `${id}-reason`, text: "Reason" }), reasonSelect,
        el("label", { for: `${id}-comment`, text: "Comment (optional)" }), comment),
      overrideButton));
    article.append(feedback);
    return article;
  }

  async function sendFeedback(card, item, controls, feedback, done) {
    if (!card.uuid) {
      feedback.textContent = "This card has no uuid, so no feedback can be sent (CDS Hooks).";
      return false;
    }
    const payload = { feedback: [{ card: card.uuid, ...item, outcomeTimestamp: new Date().toISOString() }] };
    const url = `/cds-services/${encodeURIComponent(state.built.service)}/feedback`;
    for (const control of controls) control.disabled = true;
    const answer = await call("POST", url, payload);
    $("raw-feedback").textContent = `POST ${url}\n${pretty(payload)}\n\nHTTP ${answer.status}\n${pretty(answer.body)}`;
    if (!answer.ok) {
      for (const control of controls) control.disabled = false;
      const issues = answer.body && answer.body.issue ? answer.body.issue.map((i) => i.diagnostics).join("; ") : "";
      feedback.textContent = `Feedback was not stored: HTTP ${answer.status}. ${issues}`;
      feedback.className = "card-feedback failed";
      return false;
    }
    const unknown = answer.body.unknownCards ? ` (${answer.body.unknownCards} for a card the service did not issue)` : "";
    feedback.textContent = `${done} Feedback stored: ${answer.body.stored} item${answer.body.stored === 1 ? "" : "s"}${unknown}.`;
    feedback.className = "card-feedback stored";
    return true;
  }

  async function accept(card, suggestion, controls, feedback) {
    if (!suggestion.uuid) {
      feedback.textContent = "This suggestion has no uuid, so no feedback can be sent (CDS Hooks).";
      showEffect(suggestion);
      return;
    }
    const item = { outcome: "accepted", acceptedSuggestions: [{ id: suggestion.uuid }] };
    if (await sendFeedback(card, item, controls, feedback, `Accepted “${suggestion.label}”.`)) showEffect(suggestion);
  }

  async function override(card, reason, comment, controls, feedback) {
    const overrideReason = {};
    if (reason) overrideReason.reason = { code: reason.code, system: reason.system, display: reason.display };
    if (comment) overrideReason.userComment = comment;
    const item = { outcome: "overridden" };
    if (Object.keys(overrideReason).length) item.overrideReason = overrideReason;
    const why = reason ? ` (${reason.display || reason.code})` : "";
    await sendFeedback(card, item, controls, feedback, `Overridden${why}.`);
  }

  // ---------------------------------------------------------------- suggestion effect on the draft orders

  const refOf = (resource) => (resource && resource.id ? `${resource.resourceType}/${resource.id}` : null);

  function draftOrders() {
    const bundle = state.built.request.context.draftOrders || {};
    return (bundle.entry || []).map((e) => e.resource).filter(Boolean);
  }

  // CDS Hooks: a suggestion's actions apply as a FHIR transaction would: deletes, creates, updates.
  function applyActions(before, actions) {
    const byType = (type) => actions.filter((a) => a.type === type);
    const removed = new Set(byType("delete").map((a) => a.resourceId || refOf(a.resource)));
    let after = before.filter((r) => !removed.has(refOf(r))).map((r) => ({ resource: r, change: null }));
    after = after.concat(byType("create").map((a) => ({ resource: a.resource, change: "new" })));
    for (const action of byType("update")) {
      const target = refOf(action.resource);
      const i = after.findIndex((row) => refOf(row.resource) === target);
      if (i >= 0) after[i] = { resource: action.resource, change: "changed" };
    }
    return { removed, after };
  }

  function describe(resource) {
    const concept = resource.code || resource.performerType || {};
    const coding = (concept.coding || [])[0] || {};
    const name = concept.text || coding.display || "(no name)";
    const code = coding.code ? ` [${coding.code}]` : "";
    return `${refOf(resource) || `${resource.resourceType} (new)`}: ${name}${code}, ${resource.status || "no status"}`;
  }

  function showEffect(suggestion) {
    const before = draftOrders();
    const { removed, after } = applyActions(before, suggestion.actions || []);
    fill($("orders-before"), ...before.map((r) => {
      const gone = removed.has(refOf(r));
      return el("li", { class: gone ? "removed" : null }, describe(r), gone ? el("strong", { text: " (removed)" }) : null);
    }));
    fill($("orders-after"), ...(after.length
      ? after.map((row) => el("li", { class: row.change }, describe(row.resource),
        row.change ? el("strong", { text: ` (${row.change})` }) : null))
      : [el("li", { text: "No draft orders." })]));
    $("effect-heading").textContent = `What “${suggestion.label}” does to the draft orders`;
    $("orders-effect").hidden = false;
  }

  // ---------------------------------------------------------------- start

  async function init() {
    const [catalog, list] = await Promise.all([call("GET", "/sandbox/api/catalog"), call("GET", "/sandbox/api/scenarios")]);
    if (!catalog.ok || !list.ok) {
      showError("The sandbox API did not answer.", catalog.ok ? list.body : catalog.body);
      return;
    }
    state.catalog = catalog.body;
    state.scenarios = list.body.scenarios;
    $("profile").textContent = state.catalog.profileTitle;
    $("profile-id").textContent = `LUMBAR_CDS_PROFILE=${state.catalog.profile}`;
    $("order").append(...state.catalog.orders.map((o) =>
      el("option", { value: o.id, text: `${o.label} (${o.system} ${o.coding.code})` })));
    $("red-flag").append(
      el("option", { value: state.catalog.removeRedFlags, text: "Remove every red flag" }),
      el("optgroup", { label: "Add a red flag" }, state.catalog.redFlags.map((f) =>
        el("option", { value: f.category, text: `${f.label} (${f.system} ${f.coding.code})` }))),
    );
    $("onset").max = String(state.catalog.limits.onsetDaysAgo);
    $("pt-weeks").max = String(state.catalog.limits.ptWeeks);
    $("scenario-filter").addEventListener("input", renderScenarioList);
    $("order-form").addEventListener("submit", (event) => {
      event.preventDefault();
      fire();
    });
    $("reset").addEventListener("click", () => {
      resetWhatIfs();
      fire();
    });
    renderScenarioList();
    const wanted = new URLSearchParams(location.search).get("scenario");
    if (wanted) selectScenario(wanted);
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", init);
})();
