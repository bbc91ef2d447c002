//! `vivirk demo`: a realistic data set so a newcomer sees something at once — accounts in every
//! role, companies with mentors, and courses with months of contacts, check-ins, guidance,
//! goals, actions, placements and meetings. Written through the application layer, so every
//! event passes the same decisions as through the API. All names are invented.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::app::{Principal, Vivirk, WriteOptions};
use crate::auth::{Auth, AuthConfig, NewAccount};
use crate::clock::{SharedClock, SystemClock};
use crate::domain::{AccountId, CompanyCommand, CompanyId, CourseCommand, CourseId, Role};
use crate::log::{EventLog, LogConfig};

pub const DEMO_PASSWORD: &str = "demo-password-2026";

#[derive(clap::Args)]
pub struct DemoArgs {
    #[arg(long, env = "VIVIRK_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// How many courses.
    #[arg(long, default_value_t = 12)]
    courses: usize,
}

pub fn run(args: DemoArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(load(args)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

struct Loader {
    app: Vivirk,
    now: OffsetDateTime,
    events: usize,
}

impl Loader {
    async fn course(
        &mut self,
        who: &Principal,
        id: CourseId,
        command: &str,
        data: Value,
        days_ago: i64,
    ) -> Result<(), String> {
        let cmd: CourseCommand =
            serde_json::from_value(json!({"command": command, "data": data})).map_err(|e| format!("{command}: {e}"))?;
        let opts = WriteOptions { occurred_at: Some(self.now - Duration::days(days_ago)), ..Default::default() };
        self.app.execute_course(who, id, cmd, opts).await.map_err(|e| format!("{command}: {e}"))?;
        self.events += 1;
        Ok(())
    }
}

fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

async fn load(args: DemoArgs) -> Result<String, String> {
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.now();
    let (log, _) = EventLog::open(LogConfig::new(&args.data_dir)).map_err(|e| e.to_string())?;
    let auth_db = crate::open_sled(&args.data_dir.join("auth"), Some(1000)).map_err(|e| e.to_string())?;
    let auth = Auth::open(&args.data_dir, log.clone(), auth_db, clock.clone(), AuthConfig::default())
        .map_err(|e| e.to_string())?;
    let admin_password = auth.bootstrap_admin().await.map_err(|e| e.to_string())?;
    let admin_view = auth.list_accounts().into_iter().find(|a| a.role == Role::Admin).ok_or("no admin account")?;
    let admin =
        crate::auth::Principal { account_id: admin_view.account_id, role: Role::Admin, username: admin_view.username };

    let mut people: Vec<(String, Role, AccountId)> = Vec::new();
    let roster = [
        ("cw.hansen", "Mette Hansen", Role::Caseworker),
        ("cw.nielsen", "Lars Nielsen", Role::Caseworker),
        ("teacher.berg", "Anna Berg", Role::Teacher),
        ("yc.olsen", "Jonas Olsen", Role::YouthCoordinator),
        ("mentor.kim", "Kim Larsen", Role::Mentor),
        ("mentor.sofie", "Sofie Dahl", Role::Mentor),
        ("auditor.ane", "Ane Holm", Role::Auditor),
    ];
    for (u, name, role) in roster {
        let v = create(&auth, &admin, u, name, role).await?;
        people.push((u.to_owned(), role, v));
    }
    let find = |u: &str| people.iter().find(|p| p.0 == u).map(|p| Principal { account_id: p.2, role: p.1 });
    let caseworkers = [find("cw.hansen").ok_or("cw")?, find("cw.nielsen").ok_or("cw")?];
    let teacher = find("teacher.berg").ok_or("teacher")?;
    let yc = find("yc.olsen").ok_or("yc")?;
    let mentors = [find("mentor.kim").ok_or("mentor")?, find("mentor.sofie").ok_or("mentor")?];

    let mut loader = Loader { app: Vivirk::new(log.clone(), clock.clone()), now, events: 0 };
    // Companies: the provider's social-economic café and two ordinary companies.
    let companies = [
        ("Café Trinet", "food service", "social_economic", 0usize),
        ("Brugsen Nord", "retail", "ordinary", 0),
        ("Tømrer Jensen ApS", "construction", "ordinary", 1),
    ];
    let mut company_ids = Vec::new();
    for (name, industry, kind, mentor) in companies {
        let id = CompanyId(Uuid::now_v7());
        let register: CompanyCommand = serde_json::from_value(json!({"command": "register_company", "data": {
            "company_id": id, "name": name, "industry": industry, "kind": kind, "cvr": null}}))
        .map_err(|e| e.to_string())?;
        loader.app.execute_company(&yc, id, register, WriteOptions::default()).await.map_err(|e| e.to_string())?;
        let m: CompanyCommand = serde_json::from_value(json!({"command": "register_mentor", "data": {
            "account_id": mentors[mentor].account_id, "position": "shift lead"}}))
        .map_err(|e| e.to_string())?;
        loader.app.execute_company(&yc, id, m, WriteOptions::default()).await.map_err(|e| e.to_string())?;
        let cap: CompanyCommand = serde_json::from_value(json!({"command": "assess_relational_capacity", "data": {
            "score": 4, "notes": "Patient team, a fixed contact person, quiet corner for breaks.",
            "tasks_offered": ["stocking", "cleaning", "simple prep"]}}))
        .map_err(|e| e.to_string())?;
        loader.app.execute_company(&yc, id, cap, WriteOptions::default()).await.map_err(|e| e.to_string())?;
        company_ids.push((id, mentor, kind));
        loader.events += 3;
    }

    let programmes = ["ressourceforloeb", "jobafklaringsforloeb", "stu", "fgu"];
    for i in 0..args.courses {
        let young = create(
            &auth,
            &admin,
            &format!("young.{:02}", i + 1),
            &format!("Young person {}", i + 1),
            Role::YoungPerson,
        )
        .await?;
        let parent =
            create(&auth, &admin, &format!("network.{:02}", i + 1), &format!("Parent {}", i + 1), Role::Network)
                .await?;
        let cw = &caseworkers[i % 2];
        let (company, mentor_ix, kind) = company_ids[i % company_ids.len()];
        let mentor = &mentors[mentor_ix];
        let weeks: i64 = 8 + (i as i64 * 3) % 18;
        let start = now - Duration::weeks(weeks);
        let programme = if i % 4 == 0 && start.year() >= 2026 { "jobafklaringsforloeb" } else { programmes[i % 4] };
        let course = CourseId(Uuid::now_v7());
        let ago = |d: i64| d;
        loader
            .course(cw, course, "open_course", json!({"course_id": course, "young_person": young, "programme": programme,
                "referring_caseworker": cw.account_id, "municipality": if i % 2 == 0 { "Aarhus Kommune" } else { "Randers Kommune" },
                "start_date": date(start)}), weeks * 7)
            .await?;
        for (who, role, company) in [
            (teacher.account_id, "teacher", None),
            (yc.account_id, "youth_coordinator", None),
            (mentor.account_id, "mentor", Some(company)),
        ] {
            loader
                .course(
                    cw,
                    course,
                    "assign_participant",
                    json!({"account_id": who, "role": role, "relation": null,
                "company_id": company}),
                    weeks * 7 - 1,
                )
                .await?;
        }
        loader
            .course(
                cw,
                course,
                "assign_participant",
                json!({"account_id": parent, "role": "network",
            "relation": "parent", "company_id": null}),
                weeks * 7 - 1,
            )
            .await?;
        loader
            .course(
                cw,
                course,
                "agree_contact_plan",
                json!({"every_days": 14, "by": [cw.account_id],
            "note": "Phone or meeting every second week."}),
                weeks * 7 - 1,
            )
            .await?;
        let goals = [
            ("work_life", "Arrive on time three days a week"),
            ("everyday_life", "Take the bus alone"),
            ("leisure_life", "Try the local football club"),
        ];
        let mut goal_ids = Vec::new();
        for (domain, title) in goals {
            let g = Uuid::now_v7();
            loader
                .course(
                    &teacher,
                    course,
                    "set_goal",
                    json!({"goal_id": g, "life_domain": domain, "title": title,
                "description": null}),
                    weeks * 7 - 2,
                )
                .await?;
            goal_ids.push(g);
        }
        loader
            .course(
                &teacher,
                course,
                "set_sub_goal",
                json!({"goal_id": Uuid::now_v7(), "parent_goal_id": goal_ids[0],
            "title": "Set two alarms", "description": null}),
                weeks * 7 - 2,
            )
            .await?;
        loader
            .course(
                cw,
                course,
                "record_support_need",
                json!({"area": "social", "life_domain": "work_life",
            "description": "Needs a fixed colleague to ask; new people are hard."}),
                weeks * 7 - 3,
            )
            .await?;
        loader.course(cw, course, "change_phase", json!({"phase": "practice"}), weeks * 7 - 10).await?;
        let placement = Uuid::now_v7();
        let placement_days = weeks * 7 - 14;
        loader.course(cw, course, "start_placement", json!({"placement_id": placement, "kind": if i % 3 == 0 { "work_trial" } else { "practice_arena" },
            "company_id": company, "workplace": kind, "mentor": mentor.account_id, "hours_per_week": 10 + (i % 3) * 5,
            "tasks": [{"task": "stocking shelves", "goal_ids": [goal_ids[0]]}], "start_date": date(now - Duration::days(placement_days))}),
            placement_days).await?;
        let valid_to = (now - Duration::days(placement_days) + Duration::days(if i % 4 == 1 { 80 } else { 150 }))
            .min(now + Duration::days(170));
        loader.course(cw, course, "make_mentor_agreement", json!({"agreement_id": Uuid::now_v7(), "placement_id": placement,
            "mentor": mentor.account_id, "valid_from": date(now - Duration::days(placement_days)), "valid_to": date(valid_to),
            "goal_ids": [goal_ids[0]], "tasks": ["stocking shelves"], "hours_per_week": 10}), placement_days).await?;
        // Weekly rhythm: a check-in by the mentor, guidance every other week, caseworker contact
        // every two to three weeks (some courses fall behind on purpose, to show overdue).
        let mut week = placement_days / 7;
        while week >= 1 {
            let d = ago(week * 7);
            loader
                .course(
                    mentor,
                    course,
                    "log_check_in",
                    json!({"placement_id": placement,
                "attendance": if week % 5 == 0 { "late" } else { "present" }, "wellbeing": 2 + (week + i as i64) % 4,
                "tasks_done": ["stocking shelves", "break with the team"],
                "concerns": if week % 4 == 0 { Value::from("Tired; short night.") } else { Value::Null },
                "next_step": "Keep the same start time next week."}),
                    d,
                )
                .await?;
            if week % 2 == 0 {
                loader
                    .course(
                        &teacher,
                        course,
                        "hold_guidance_session",
                        json!({"work_tasks": ["stocking shelves"],
                    "goal_ids": [goal_ids[0]], "duration_minutes": 45,
                    "summary": "Went through the morning routine and the first hour at work."}),
                        d - 1,
                    )
                    .await?;
            }
            if week % (2 + (i as i64 % 2)) == 0 && !(i % 3 == 2 && week < 5) {
                loader
                    .course(
                        cw,
                        course,
                        "log_contact",
                        json!({"with": [young], "channel": if week % 3 == 0 { "in_person" } else { "phone" },
                    "direction": "to_young_person", "outreach": true, "individual": true, "duration_minutes": 25,
                    "summary": "Talked about how the week went and what is hard."}),
                        d - 2,
                    )
                    .await?;
            }
            if week % 6 == 0 {
                loader
                    .course(
                        cw,
                        course,
                        "record_meeting",
                        json!({"kind": "coordination",
                    "attendees": [cw.account_id, teacher.account_id, mentor.account_id, young], "other_attendees": [],
                    "decisions": ["Keep hours as they are for now."]}),
                        d - 1,
                    )
                    .await?;
            }
            week -= 1;
        }
        let action_done = Uuid::now_v7();
        loader
            .course(
                cw,
                course,
                "agree_action",
                json!({"action_id": action_done, "what": "Apply for a bus card",
            "owner": cw.account_id, "due": date(now - Duration::days(20)), "method": "together at the citizen service",
            "goal_id": goal_ids[1], "agreed_by": [young, cw.account_id]}),
                30,
            )
            .await?;
        loader.course(cw, course, "complete_action", json!({"action_id": action_done, "note": null}), 21).await?;
        loader
            .course(
                cw,
                course,
                "agree_action",
                json!({"action_id": Uuid::now_v7(), "what": "Visit the football club once",
            "owner": teacher.account_id, "due": date(now + Duration::days(10 - (i as i64 % 3) * 12)), "method": null,
            "goal_id": goal_ids[2], "agreed_by": [young, teacher.account_id]}),
                25,
            )
            .await?;
        loader.course(mentor, course, "log_contact", json!({"with": [young], "channel": "text", "direction": "from_young_person",
            "outreach": false, "individual": false, "duration_minutes": 2, "summary": "Sent a message: running 10 minutes late."}), 2).await?;
    }
    log.shutdown().await;
    let mut out = format!(
        "demo loaded: {} accounts, {} companies, {} courses, {} events in {}\n",
        people.len() + 2 * args.courses,
        company_ids.len(),
        args.courses,
        loader.events,
        args.data_dir.display()
    );
    out.push_str(&format!(
        "every demo account's password: {DEMO_PASSWORD} (e.g. cw.hansen, mentor.kim, auditor.ane)\n"
    ));
    if let Some(p) = admin_password {
        out.push_str(&format!("created the account `admin` with password: {p}\n"));
    }
    Ok(out)
}

async fn create(
    auth: &Auth,
    admin: &crate::auth::Principal,
    username: &str,
    name: &str,
    role: Role,
) -> Result<AccountId, String> {
    if let Some(existing) = auth.list_accounts().into_iter().find(|a| a.username == username) {
        return Ok(existing.account_id);
    }
    let v = auth
        .create_account(
            admin,
            NewAccount { username: username.into(), display_name: name.into(), role, password: DEMO_PASSWORD.into() },
        )
        .await
        .map_err(|e| format!("{username}: {e}"))?;
    Ok(v.account_id)
}
