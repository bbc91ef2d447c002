// The mentor app: log in, my young people, check-ins (offline first, through the outbox), agreed
// actions. Plain DOM, no framework. Text comes from i18n.js; nothing is logged to the console.
import { authFetch, localStorageTokens, login, problemCode } from "./auth.js";
import { httpSender, LocalStorageStorage, Outbox } from "./outbox.js";
import { getLang, setLang, t } from "./i18n.js";

const BASE = location.origin;
const CACHE_KEY = "vivirk.cache";
const tokens = localStorageTokens();
const api = authFetch({ baseUrl: BASE, tokens, onLoggedOut: () => go({ name: "login" }) });
const outbox = new Outbox({ storage: new LocalStorageStorage(), send: httpSender(BASE, api), onChange: renderChrome });

let view = { name: tokens.get() ? "courses" : "login" };
let notice = null; // { text, waiting }
let cache = JSON.parse(localStorage.getItem(CACHE_KEY) ?? "null") ?? { courses: [], status: {}, actions: {} };
let offlineCopy = false;

const $ = (id) => document.getElementById(id);

/** h("p", { class: "x", onclick }, "text", child) → an element; no HTML strings anywhere. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return el;
}

async function getJson(path) {
  const res = await api(new Request(BASE + path));
  if (!res.ok) throw new Error((await problemCode(res)) ?? `http_${res.status}`);
  return res.json();
}

async function refresh() {
  try {
    const courses = await getJson("/v1/me/courses");
    const status = {};
    const actions = {};
    await Promise.all(
      courses.map(async (c) => {
        status[c.course_id] = await getJson(`/v1/courses/${c.course_id}`);
        actions[c.course_id] = await getJson(`/v1/courses/${c.course_id}/actions`);
      }),
    );
    cache = { courses, status, actions };
    localStorage.setItem(CACHE_KEY, JSON.stringify(cache));
    offlineCopy = false;
  } catch {
    offlineCopy = true;
  }
  if (tokens.get()) render();
}

async function sync() {
  if (outbox.pending.length === 0) return;
  const before = outbox.pending.length;
  const r = await outbox.flush();
  if (r.pending < before) {
    if (notice?.waiting && r.pending === 0) notice = { text: t("sent") };
    await refresh();
  }
}

function go(next, keepNotice = false) {
  view = next;
  if (!keepNotice) notice = null;
  render();
  $("main").focus();
}

// --- chrome: network state, outbox banner, language, logout -------------------------------

function renderChrome() {
  $("net").textContent = navigator.onLine ? t("online") : t("offline");
  $("lang").textContent = t("switch_to");
  $("lang").setAttribute("lang", getLang() === "da" ? "en" : "da");
  $("logout").textContent = t("logout");
  $("logout").hidden = !tokens.get();
  const box = $("outbox");
  box.replaceChildren();
  box.className = "outbox";
  if (outbox.pending.length > 0) {
    box.append(
      h("span", { id: "waiting" }, t("waiting", outbox.pending.length)),
      h("button", { type: "button", class: "secondary", onclick: () => sync() }, t("send_now")),
    );
  } else if (outbox.rejected.length > 0) {
    box.classList.add("rejected");
    box.append(
      h("span", {}, t("rejected", outbox.rejected.length)),
      h("button", { type: "button", class: "secondary", onclick: () => outbox.rejected.forEach((w) => outbox.dismiss(w.key)) }, t("dismiss")),
    );
  }
  box.hidden = box.childElementCount === 0;
}

// --- views ---------------------------------------------------------------------------------

function loginView() {
  const error = h("p", { class: "error", role: "alert" });
  const submit = async (e) => {
    e.preventDefault();
    const form = e.target;
    try {
      await login(BASE, tokens, form.username.value.trim(), form.password.value);
      go({ name: "courses" });
      refresh();
    } catch (err) {
      error.textContent = err instanceof TypeError ? t("login_offline") : t("login_failed");
    }
  };
  return [
    h("h1", {}, t("login_title")),
    h("form", { class: "card", onsubmit: submit },
      h("label", { for: "username" }, t("username")),
      h("input", { id: "username", name: "username", type: "text", autocomplete: "username", autocapitalize: "none", required: true }),
      h("label", { for: "password" }, t("password")),
      h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true }),
      error,
      h("button", { type: "submit", class: "primary" }, t("login"))),
  ];
}

function contactLine(c) {
  if (c.contact === "overdue") return h("p", { class: "due" }, t("contact_overdue", c.next_contact_due));
  if (c.contact === "due_soon") return h("p", { class: "due" }, t("contact_due_soon", c.next_contact_due));
  if (c.contact === "ok") return h("p", { class: "ok" }, t("contact_ok", c.next_contact_due));
  return h("p", { class: "meta" }, t("contact_none"));
}

function actionLine(a) {
  const when = a.days_overdue > 0 ? t("overdue", a.days_overdue) : t("due", a.due);
  return h("li", {}, a.what, h("br"), h("span", { class: a.days_overdue > 0 ? "due" : "meta" }, when));
}

function coursesView() {
  const cards = cache.courses.map((c) => {
    const s = cache.status[c.course_id] ?? {};
    return h("section", { class: "card", "aria-labelledby": `c-${c.course_id}` },
      h("h2", { id: `c-${c.course_id}` }, `${t("young_person")} ${c.young_person.slice(-4)}`),
      h("p", { class: "meta" }, [s.programme_name, s.municipality].filter(Boolean).join(" · ")),
      contactLine(c),
      h("h3", { class: "meta" }, t("next_actions")),
      c.next_actions.length ? h("ul", { class: "plain" }, c.next_actions.slice(0, 3).map(actionLine)) : h("p", { class: "meta" }, t("no_actions")),
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", onclick: () => go({ name: "check-in", course: c.course_id }) }, t("log_check_in")),
        h("button", { type: "button", class: "secondary", onclick: () => go({ name: "actions", course: c.course_id }) }, t("see_actions"))));
  });
  return [
    notice && h("p", { class: `notice${notice.waiting ? " waiting" : ""}`, role: "status" }, notice.text),
    h("h1", {}, t("my_young")),
    offlineCopy && h("p", { class: "meta" }, t("saved_copy")),
    cards.length ? cards : h("p", {}, t("none")),
  ];
}

function choice(name, value, label, extra) {
  const id = `${name}-${value}`;
  return [h("input", { type: "radio", name, id, value, required: true }), h("label", { for: id }, label, extra)];
}

function checkInView({ course }) {
  const placement = cache.status[course]?.active_placement?.placement_id;
  const back = h("button", { type: "button", class: "link", onclick: () => go({ name: "courses" }) }, t("back"));
  if (!placement) return [back, h("h1", {}, t("check_in_title")), h("p", {}, t("no_placement"))];
  const error = h("p", { class: "error", role: "alert" });
  const submit = async (e) => {
    e.preventDefault();
    const f = e.target;
    if (!f.attendance.value || !f.wellbeing.value) return void (error.textContent = t("choose"));
    const text = (v) => v.trim() || null;
    const write = outbox.enqueue(`/v1/courses/${course}/check-ins`, {
      placement_id: placement,
      attendance: f.attendance.value,
      wellbeing: Number(f.wellbeing.value),
      tasks_done: f.tasks.value.split("\n").map((s) => s.trim()).filter(Boolean),
      concerns: text(f.concerns.value),
      next_step: text(f.next_step.value),
    });
    await outbox.flush();
    const waiting = outbox.pending.some((w) => w.key === write.key);
    notice = waiting ? { text: t("waiting_one"), waiting } : { text: t("sent") };
    go({ name: "courses" }, true);
    if (!waiting) refresh();
  };
  const attendance = ["present", "late", "absent_notified", "absent_unnotified"];
  return [
    back,
    h("h1", {}, t("check_in_title")),
    h("form", { class: "card", onsubmit: submit, novalidate: true },
      h("fieldset", {}, h("legend", {}, t("attendance")),
        h("div", { class: "choices attendance" }, attendance.map((a) => choice("attendance", a, t(a))))),
      h("fieldset", {}, h("legend", {}, t("wellbeing")),
        h("div", { class: "choices wellbeing" }, [1, 2, 3, 4, 5].map((n) => choice("wellbeing", n, String(n), h("small", {}, t(`w${n}`)))))),
      h("label", { for: "tasks" }, t("tasks")),
      h("textarea", { id: "tasks", name: "tasks", rows: 3 }),
      h("label", { for: "concerns" }, t("concerns")),
      h("textarea", { id: "concerns", name: "concerns", rows: 2 }),
      h("label", { for: "next_step" }, t("next_step")),
      h("textarea", { id: "next_step", name: "next_step", rows: 2 }),
      error,
      h("button", { type: "submit", class: "primary" }, t("save"))),
  ];
}

function actionsView({ course }) {
  const open = (cache.actions[course] ?? []).filter((a) => a.outcome === "open");
  const item = (a) => {
    const path = `/v1/courses/${course}/actions/${a.action_id}/complete`;
    const waiting = outbox.pending.some((w) => w.path === path);
    const done = async () => {
      outbox.enqueue(path, { note: null });
      render();
      await sync();
      render();
    };
    return h("li", {},
      h("strong", {}, a.what), h("br"),
      h("span", { class: a.days_overdue > 0 ? "due" : "meta" }, a.days_overdue > 0 ? t("overdue", a.days_overdue) : t("due", a.due)),
      h("div", { class: "row" }, waiting
        ? h("span", { class: "notice waiting" }, t("done_waiting"))
        : h("button", { type: "button", class: "secondary", onclick: done }, t("mark_done"))));
  };
  return [
    h("button", { type: "button", class: "link", onclick: () => go({ name: "courses" }) }, t("back")),
    h("h1", {}, t("actions_title")),
    open.length ? h("ul", { class: "plain card" }, open.map(item)) : h("p", {}, t("no_actions")),
  ];
}

function render() {
  if (!tokens.get()) view = { name: "login" };
  const views = { login: loginView, courses: coursesView, "check-in": checkInView, actions: actionsView };
  $("main").replaceChildren(...views[view.name](view).flat().filter(Boolean));
  renderChrome();
}

// --- start ---------------------------------------------------------------------------------

$("lang").addEventListener("click", () => {
  setLang(getLang() === "da" ? "en" : "da");
  render();
});
$("logout").addEventListener("click", () => {
  // Queued writes belong to this user: never send them under the next one's login.
  if (outbox.pending.length > 0 && !confirm(t("logout_pending", outbox.pending.length))) return;
  const t0 = tokens.get();
  if (t0) api(new Request(`${BASE}/v1/auth/logout`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ refresh_token: t0.refresh_token }) })).catch(() => {});
  tokens.set(null);
  for (const key of [CACHE_KEY, "vivirk.outbox"]) localStorage.removeItem(key);
  location.reload();
});
addEventListener("online", () => sync().then(refresh));
addEventListener("offline", renderChrome);
setInterval(() => navigator.onLine && sync(), 15000);

setLang(getLang());
render();
if (tokens.get()) sync().then(refresh);
if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js", { scope: "./" }).catch(() => {});
