//! The permission matrix: what each role may do in a room under each control mode, in one
//! place so that the RPCs, `CheckAccess` and the tests all read the same rules.
//!
//! Whether the room is still open is a separate question (a closed room refuses every change
//! with `FAILED_PRECONDITION`), answered by the caller before asking this one.

use crate::model::{ControlMode, Role};

/// Something a caller wants to do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See the member list.
    ListMembers,
    /// Change the name or description.
    EditDetails,
    /// Change visibility, the password or the control mode.
    EditSettings,
    /// Make a member a moderator or a member again.
    SetRole,
    /// Remove a member holding `target` role.
    Kick { target: Role },
    /// Hand the room to another member.
    TransferOwnership,
    /// Close the room for everyone.
    Close,
    /// Play, pause, seek and change the queue (enforced by sync-svc through `CheckAccess`).
    ControlPlayback,
    /// Delete messages and mute people (enforced by chat-svc through `CheckAccess`).
    Moderate,
}

/// Whether `role` (`None`: not a member) may perform `action` in a room controlled by `mode`.
#[must_use]
pub fn allows(action: Action, role: Option<Role>, mode: ControlMode) -> bool {
    let Some(role) = role else {
        return false;
    };
    match action {
        Action::ListMembers => true,
        Action::EditDetails | Action::Moderate => role >= Role::Moderator,
        Action::EditSettings | Action::SetRole | Action::TransferOwnership | Action::Close => role == Role::Owner,
        // Only someone above the target: owners kick moderators and members, moderators kick
        // members, and nobody kicks the owner.
        Action::Kick { target } => role > target,
        Action::ControlPlayback => match mode {
            ControlMode::Everyone => true,
            ControlMode::Moderators => role >= Role::Moderator,
            ControlMode::Owner => role == Role::Owner,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [ControlMode; 3] = [ControlMode::Everyone, ControlMode::Moderators, ControlMode::Owner];
    const ROLES: [Option<Role>; 4] = [Some(Role::Owner), Some(Role::Moderator), Some(Role::Member), None];

    /// The expected answer for each action and control mode, by role in the order of `ROLES`
    /// (owner, moderator, member, non-member). Written out in full rather than derived.
    fn expected(action: Action, mode: ControlMode) -> [bool; 4] {
        use ControlMode::{Everyone, Moderators, Owner};
        const T: bool = true;
        const F: bool = false;
        match (action, mode) {
            (Action::ListMembers, Everyone | Moderators | Owner) => [T, T, T, F],
            (Action::EditDetails, Everyone | Moderators | Owner) => [T, T, F, F],
            (Action::EditSettings, Everyone | Moderators | Owner) => [T, F, F, F],
            (Action::SetRole, Everyone | Moderators | Owner) => [T, F, F, F],
            (Action::Kick { target: Role::Owner }, Everyone | Moderators | Owner) => [F, F, F, F],
            (Action::Kick { target: Role::Moderator }, Everyone | Moderators | Owner) => [T, F, F, F],
            (Action::Kick { target: Role::Member }, Everyone | Moderators | Owner) => [T, T, F, F],
            (Action::TransferOwnership, Everyone | Moderators | Owner) => [T, F, F, F],
            (Action::Close, Everyone | Moderators | Owner) => [T, F, F, F],
            (Action::ControlPlayback, Everyone) => [T, T, T, F],
            (Action::ControlPlayback, Moderators) => [T, T, F, F],
            (Action::ControlPlayback, Owner) => [T, F, F, F],
            (Action::Moderate, Everyone | Moderators | Owner) => [T, T, F, F],
        }
    }

    #[test]
    fn every_action_role_and_control_mode() {
        let actions = [
            Action::ListMembers,
            Action::EditDetails,
            Action::EditSettings,
            Action::SetRole,
            Action::Kick { target: Role::Owner },
            Action::Kick { target: Role::Moderator },
            Action::Kick { target: Role::Member },
            Action::TransferOwnership,
            Action::Close,
            Action::ControlPlayback,
            Action::Moderate,
        ];
        let mut checked = 0;
        for action in actions {
            for mode in MODES {
                for (role, expected) in ROLES.into_iter().zip(expected(action, mode)) {
                    assert_eq!(allows(action, role, mode), expected, "{action:?} by {role:?} under {mode:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 11 * 3 * 4);
    }

    #[test]
    fn playback_control_follows_the_mode() {
        assert!(allows(Action::ControlPlayback, Some(Role::Member), ControlMode::Everyone));
        assert!(!allows(Action::ControlPlayback, Some(Role::Member), ControlMode::Moderators));
        assert!(allows(Action::ControlPlayback, Some(Role::Moderator), ControlMode::Moderators));
        assert!(!allows(Action::ControlPlayback, Some(Role::Moderator), ControlMode::Owner));
        assert!(!allows(Action::ControlPlayback, None, ControlMode::Everyone));
    }
}
