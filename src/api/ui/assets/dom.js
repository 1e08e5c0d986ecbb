// Building the page from data safely: every string becomes a text node or a property,
// never markup. Nothing here parses HTML.

const SVG = "http://www.w3.org/2000/svg";
/** Set as properties (form state), everything else as attributes. */
const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden"]);

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

function apply(element, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) {
      element.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      element.textContent = String(value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (PROPS.has(name)) {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  return element;
}

/** `h("a", {href, class}, "text", child…)`: an element; strings become text nodes. */
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG, tag), attrs), children);
}

/** Replaces what `parent` holds. */
export function put(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** A time in local time, with the UTC time in its title; "—" when absent. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, String(iso));
  return h("time", { datetime: date.toISOString(), title: `${date.toISOString()} (UTC)` }, date.toLocaleString());
}

/** A status or state word as a coloured badge. */
export function badge(word, kind) {
  const text = word === null || word === undefined ? "unknown" : String(word);
  return h("span", { class: `badge badge-${kind || text.replace(/[^a-z_]/gi, "")}` }, text);
}

/** `code` text, shortened to `max` characters with the whole in its title. */
export function short(text, max = 60) {
  if (text === null || text === undefined || text === "") return h("span", { class: "muted" }, "—");
  const value = String(text);
  if (value.length <= max) return h("span", {}, value);
  return h("span", { title: value }, `${value.slice(0, max - 1)}…`);
}

/** The message an API error gives, as an alert box. */
export function errorBox(error, what) {
  const message = error && error.message ? error.message : String(error);
  const status = error && error.status ? ` (${error.status})` : "";
  return h("div", { class: "notice error", role: "alert" }, what ? `${what}: ` : "", message, status);
}

/** A box saying there is nothing to show. */
export function empty(text) {
  return h("p", { class: "empty" }, text);
}

/** A page heading that takes focus after navigation (keyboard and screen readers). */
export function heading(text, ...rest) {
  return h("h1", { tabindex: "-1", id: "page-title" }, text, ...rest);
}

/** A table: `columns` of `{label, sort?}` and rows of cells (nodes or text). */
export function table(columns, rows, options = {}) {
  const head = h(
    "tr",
    {},
    columns.map((column) => {
      const attrs = { scope: "col" };
      if (column.sort) {
        const active = options.sortKey === column.sort;
        attrs["aria-sort"] = active ? (options.sortDir > 0 ? "ascending" : "descending") : "none";
        return h(
          "th",
          attrs,
          h("button", { type: "button", class: "sort", onclick: () => options.onSort(column.sort) },
            column.label, active ? (options.sortDir > 0 ? " ▲" : " ▼") : ""),
        );
      }
      return h("th", attrs, column.label);
    }),
  );
  const body = rows.map((cells) => {
    const row = h("tr", {});
    cells.forEach((cell, i) => row.append(h("td", { "data-label": columns[i].label }, cell)));
    return row;
  });
  return h("div", { class: "table-wrap" }, h("table", { class: options.class || "" }, h("thead", {}, head), h("tbody", {}, body)));
}

/** A `<dl>` of `[term, value]` pairs. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/**
 * A success-rate chart. One bucket (`{successes, attempts}`): a bar split green/red by the
 * rate. Several (a time series): one column per bucket, its height the attempts, the
 * failed part red. The text alternative is `label`.
 */
export function rateChart(buckets, label) {
  const width = 120;
  const height = buckets.length > 1 ? 24 : 12;
  const bars = [];
  if (buckets.length <= 1) {
    const b = buckets[0] || { attempts: 0, successes: 0 };
    if (!b.attempts) {
      bars.push(s("rect", { x: 0, y: 0, width, height, class: "bar-none" }));
    } else {
      const ok = (width * b.successes) / b.attempts;
      bars.push(s("rect", { x: 0, y: 0, width: ok, height, class: "bar-ok" }));
      bars.push(s("rect", { x: ok, y: 0, width: width - ok, height, class: "bar-fail" }));
    }
  } else {
    const gap = 1;
    const barWidth = (width - gap * (buckets.length - 1)) / buckets.length;
    const most = Math.max(1, ...buckets.map((b) => b.attempts));
    buckets.forEach((bucket, i) => {
      const x = i * (barWidth + gap);
      if (!bucket.attempts) {
        bars.push(s("rect", { x, y: height - 1, width: barWidth, height: 1, class: "bar-none" }));
        return;
      }
      const total = Math.max(2, (bucket.attempts / most) * height);
      const ok = (total * bucket.successes) / bucket.attempts;
      bars.push(s("rect", { x, y: height - total, width: barWidth, height: total - ok, class: "bar-fail" }));
      bars.push(s("rect", { x, y: height - ok, width: barWidth, height: ok, class: "bar-ok" }));
    });
  }
  return s(
    "svg",
    { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label },
    s("title", {}, label),
    bars,
  );
}

/** "12.5 %" of a ratio, or "—". */
export function percent(ratio) {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "—";
  return `${(ratio * 100).toFixed(ratio === 1 || ratio === 0 ? 0 : 1)} %`;
}

/** A live region for the results of actions (read out when it changes). */
export function status() {
  return h("p", { class: "status", role: "status", "aria-live": "polite" });
}
