// Danish and English text. `t(key, ...args)`; functions take arguments.
const TEXT = {
  da: {
    switch_to: "English", logout: "Log ud", online: "Online", offline: "Offline",
    login_title: "Log ind", username: "Brugernavn", password: "Adgangskode", login: "Log ind",
    login_failed: "Forkert brugernavn eller adgangskode.", login_offline: "Ingen forbindelse. Prøv igen, når du er online.",
    my_young: "Mine unge", none: "Du har ingen forløb lige nu.", saved_copy: "Ingen forbindelse – viser det senest hentede.",
    young_person: "Ung", contact_overdue: (d) => `Kontakt er forfalden${d ? ` (frist ${d})` : ""}`,
    contact_due_soon: (d) => `Kontakt snart${d ? ` – senest ${d}` : ""}`,
    contact_ok: (d) => `Kontakt i orden${d ? ` – næste senest ${d}` : ""}`, contact_none: "Ingen kontaktplan",
    next_actions: "Næste aftalte handlinger", no_actions: "Ingen åbne handlinger.", due: (d) => `frist ${d}`,
    overdue: (n) => `${n} dage over fristen`,
    log_check_in: "Registrér check-in", see_actions: "Aftalte handlinger", back: "← Tilbage",
    check_in_title: "Check-in", no_placement: "Der er ingen aktiv praktik på dette forløb.",
    attendance: "Fremmøde", present: "Mødt", late: "Kom for sent", absent_notified: "Fravær, meldt", absent_unnotified: "Fravær, ikke meldt",
    wellbeing: "Trivsel (1 = meget dårlig, 5 = meget god)", w1: "meget dårlig", w2: "dårlig", w3: "middel", w4: "god", w5: "meget god",
    tasks: "Opgaver udført (én pr. linje)", concerns: "Bekymringer", next_step: "Næste skridt", save: "Gem check-in",
    choose: "Vælg fremmøde og trivsel.",
    sent: "Sendt.", waiting_one: "Gemt på telefonen – venter på at blive sendt.",
    waiting: (n) => `Venter på at sende: ${n}`, send_now: "Send nu",
    rejected: (n) => `${n} blev afvist af serveren og sendes ikke`, dismiss: "OK",
    actions_title: "Aftalte handlinger", mark_done: "Markér som udført", done: "Udført",
    done_waiting: "Udført – venter på at blive sendt", logout_pending: (n) => `${n} registreringer er ikke sendt endnu og går tabt, hvis du logger ud. Log ud alligevel?`,
  },
  en: {
    switch_to: "Dansk", logout: "Log out", online: "Online", offline: "Offline",
    login_title: "Log in", username: "Username", password: "Password", login: "Log in",
    login_failed: "Wrong username or password.", login_offline: "No connection. Try again when you are online.",
    my_young: "My young people", none: "You have no courses right now.", saved_copy: "No connection – showing what was last loaded.",
    young_person: "Young person", contact_overdue: (d) => `Contact is overdue${d ? ` (was due ${d})` : ""}`,
    contact_due_soon: (d) => `Contact due soon${d ? ` – by ${d}` : ""}`,
    contact_ok: (d) => `Contact is on track${d ? ` – next by ${d}` : ""}`, contact_none: "No contact plan",
    next_actions: "Next agreed actions", no_actions: "No open actions.", due: (d) => `due ${d}`,
    overdue: (n) => `${n} days overdue`,
    log_check_in: "Log a check-in", see_actions: "Agreed actions", back: "← Back",
    check_in_title: "Check-in", no_placement: "This course has no active placement.",
    attendance: "Attendance", present: "Present", late: "Late", absent_notified: "Absent, notified", absent_unnotified: "Absent, not notified",
    wellbeing: "Wellbeing (1 = very poor, 5 = very good)", w1: "very poor", w2: "poor", w3: "okay", w4: "good", w5: "very good",
    tasks: "Tasks done (one per line)", concerns: "Concerns", next_step: "Next step", save: "Save check-in",
    choose: "Choose attendance and wellbeing.",
    sent: "Sent.", waiting_one: "Saved on this phone – waiting to send.",
    waiting: (n) => `Waiting to send: ${n}`, send_now: "Send now",
    rejected: (n) => `${n} refused by the server and will not be sent`, dismiss: "OK",
    actions_title: "Agreed actions", mark_done: "Mark as done", done: "Done",
    done_waiting: "Done – waiting to send", logout_pending: (n) => `${n} entries have not been sent yet and will be lost if you log out. Log out anyway?`,
  },
};

let lang = localStorage.getItem("vivirk.lang") === "en" ? "en" : "da";

export const getLang = () => lang;

export function setLang(next) {
  lang = next;
  localStorage.setItem("vivirk.lang", next);
  document.documentElement.lang = next;
}

export function t(key, ...args) {
  const v = TEXT[lang][key] ?? key;
  return typeof v === "function" ? v(...args) : v;
}
