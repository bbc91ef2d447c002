//! Who may do what: the one place access is decided. The README's access matrix is checked
//! against [`allows`] by a test, so the two cannot drift.
//!
//! Two questions, always in this order:
//! 1. **May the caller see the course at all?** Only accounts currently assigned to it, and
//!    auditors. Everyone else gets 404, exactly as for a course that does not exist.
//! 2. **May the caller's role do this?** A role's permissions, below. Beyond that the domain's
//!    `decide` checks the finer rules (a check-in only by *this* course's mentor, an action owned
//!    by someone on the course, …).

use crate::domain::course::state::CourseStatus;
use crate::domain::{CourseCommand, CourseState, Role};

use super::{AppError, Principal};

/// What an endpoint requires. Each handler names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Course status, agreed actions, goals.
    ReadCourse,
    /// Contacts, check-ins, guidance sessions, meetings, contact frequency.
    ReadContactHistory,
    /// The raw envelopes with hashes, verification, the full record.
    ReadRecord,
    OpenCourse,
    ManageParticipants,
    LogCheckIn,
    LogContact,
    HoldGuidanceSession,
    /// Goals, actions, placements, agreements, assessments, support needs, meetings, contact plans.
    PlanCourse,
    CompleteAction,
    /// Phase changes and closing.
    CoordinateCourse,
    CorrectEvents,
    ReadCompanies,
    ManageCompanies,
    ManageAccounts,
    ReadAccessLog,
}

impl Permission {
    pub const ALL: [Permission; 16] = [
        Permission::ReadCourse,
        Permission::ReadContactHistory,
        Permission::ReadRecord,
        Permission::OpenCourse,
        Permission::ManageParticipants,
        Permission::LogCheckIn,
        Permission::LogContact,
        Permission::HoldGuidanceSession,
        Permission::PlanCourse,
        Permission::CompleteAction,
        Permission::CoordinateCourse,
        Permission::CorrectEvents,
        Permission::ReadCompanies,
        Permission::ManageCompanies,
        Permission::ManageAccounts,
        Permission::ReadAccessLog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::ReadCourse => "read_course",
            Permission::ReadContactHistory => "read_contact_history",
            Permission::ReadRecord => "read_record",
            Permission::OpenCourse => "open_course",
            Permission::ManageParticipants => "manage_participants",
            Permission::LogCheckIn => "log_check_in",
            Permission::LogContact => "log_contact",
            Permission::HoldGuidanceSession => "hold_guidance_session",
            Permission::PlanCourse => "plan_course",
            Permission::CompleteAction => "complete_action",
            Permission::CoordinateCourse => "coordinate_course",
            Permission::CorrectEvents => "correct_events",
            Permission::ReadCompanies => "read_companies",
            Permission::ManageCompanies => "manage_companies",
            Permission::ManageAccounts => "manage_accounts",
            Permission::ReadAccessLog => "read_access_log",
        }
    }

    /// The permission a course command needs.
    pub fn for_course_command(cmd: &CourseCommand) -> Permission {
        use CourseCommand::*;
        match cmd {
            OpenCourse(_) => Permission::OpenCourse,
            AssignParticipant(_) | UnassignParticipant(_) => Permission::ManageParticipants,
            ChangePhase(_) | CloseCourse(_) => Permission::CoordinateCourse,
            LogCheckIn(_) => Permission::LogCheckIn,
            LogContact(_) => Permission::LogContact,
            HoldGuidanceSession(_) => Permission::HoldGuidanceSession,
            CompleteAction(_) => Permission::CompleteAction,
            CorrectEvent(_) | RetractEvent(_) => Permission::CorrectEvents,
            SetGoal(_)
            | SetSubGoal(_)
            | RecordGoalProgress(_)
            | AchieveGoal(_)
            | DropGoal(_)
            | AgreeAction(_)
            | RescheduleAction(_)
            | CancelAction(_)
            | StartPlacement(_)
            | EndPlacement(_)
            | MakeMentorAgreement(_)
            | RenewMentorAgreement(_)
            | RecordAssessment(_)
            | RecordSupportNeed(_)
            | RecordMeeting(_)
            | AgreeContactPlan(_) => Permission::PlanCourse,
        }
    }
}

/// The access matrix: may an account in `role` use `perm`? (Course visibility comes first.)
pub fn allows(role: Role, perm: Permission) -> bool {
    use Permission::*;
    use Role::*;
    match perm {
        ReadCourse => {
            matches!(role, YoungPerson | Teacher | YouthCoordinator | Caseworker | Network | Mentor | Auditor)
        }
        ReadContactHistory => matches!(role, YoungPerson | Teacher | YouthCoordinator | Caseworker | Mentor | Auditor),
        ReadRecord => matches!(role, YouthCoordinator | Caseworker | Auditor),
        OpenCourse | ManageParticipants | CoordinateCourse => matches!(role, YouthCoordinator | Caseworker),
        LogCheckIn => matches!(role, Mentor),
        LogContact | CompleteAction | CorrectEvents => matches!(role, Teacher | YouthCoordinator | Caseworker | Mentor),
        HoldGuidanceSession => matches!(role, Teacher | YouthCoordinator),
        PlanCourse => matches!(role, Teacher | YouthCoordinator | Caseworker),
        ReadCompanies => matches!(role, Teacher | YouthCoordinator | Caseworker | Mentor | Auditor | Admin),
        ManageCompanies => matches!(role, YouthCoordinator | Caseworker | Admin),
        ManageAccounts => matches!(role, Admin),
        ReadAccessLog => matches!(role, Auditor),
    }
}

pub fn require(p: &Principal, perm: Permission) -> Result<(), AppError> {
    if allows(p.role, perm) { Ok(()) } else { Err(AppError::Forbidden(perm.name())) }
}

/// Course visibility: assigned accounts and auditors; never admins.
pub fn can_see_course(p: &Principal, state: &CourseState) -> bool {
    if state.status == CourseStatus::NotOpened {
        return false;
    }
    match p.role {
        Role::Auditor => true,
        Role::Admin => false,
        _ => state.is_participant(p.account_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's matrix and [`allows`] must say the same, cell by cell.
    #[test]
    fn readme_matrix_matches_the_code() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = readme
            .split("<!-- access-matrix:start -->")
            .nth(1)
            .and_then(|s| s.split("<!-- access-matrix:end -->").next())
            .expect("the README has the access matrix");
        let mut rows = table.lines().map(str::trim).filter(|l| l.starts_with('|'));
        let header: Vec<&str> = rows.next().unwrap().split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        let roles: Vec<Role> = header[1..]
            .iter()
            .map(|r| serde_json::from_value(serde_json::Value::String((*r).to_owned())).unwrap())
            .collect();
        assert_eq!(roles, Role::ALL.to_vec(), "one column per role, in order");
        let mut seen = Vec::new();
        for row in rows.skip(1) {
            let cells: Vec<&str> = row.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
            let name = cells[0].trim_matches('`');
            let perm = Permission::ALL.iter().copied().find(|p| p.name() == name).unwrap_or_else(|| panic!("{name}?"));
            for (role, cell) in roles.iter().zip(&cells[1..]) {
                assert_eq!(*cell == "✓", allows(*role, perm), "{name} × {role:?}: README says {cell}");
            }
            seen.push(perm);
        }
        assert_eq!(seen, Permission::ALL.to_vec(), "one row per permission, in order");
    }
}
