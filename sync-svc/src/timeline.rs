//! The room's shared state as plain data, and the rules that turn a command into the next
//! state. Pure: the current time comes in as an argument, so extrapolation and scheduling are
//! tested without a clock or a database.

use svc_kit::id::{RoomId, UserId};
use svc_kit::status::Violation;

use crate::Error;

/// Slowest and fastest playback rates browsers play smoothly.
pub const MIN_RATE: f64 = 0.25;
/// See [`MIN_RATE`].
pub const MAX_RATE: f64 = 4.0;
/// Longest media URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest queue; adding beyond it is refused.
pub const MAX_QUEUE_ITEMS: usize = 200;
/// Longest media title, in characters.
pub const TITLE: svc_kit::text::TextRule =
    svc_kit::text::TextRule { field: "title", min_chars: 0, max_chars: 200, allow_newline: false };

/// A playable item: a URL, or an item of media-svc's library.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub media_id: String,
    /// Empty for a library item.
    pub url: String,
    pub title: String,
    /// Milliseconds; 0 when unknown.
    pub duration_ms: i64,
    /// The library item; empty for a URL.
    pub library_item_id: String,
}

/// Where playback is: `position_ms` holds at server time `anchor_ms` and moves at `rate`
/// while not paused.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub media: Option<Media>,
    pub paused: bool,
    pub rate: f64,
    pub position_ms: i64,
    pub anchor_ms: i64,
    /// While playing, the rate before a future `anchor_ms`: 0 for a scheduled start (the frame
    /// holds), the previous rate for a scheduled rate change (playback goes on at it until the
    /// anchor, so that no player pauses or seeks for it).
    pub lead_in_rate: f64,
}

impl Timeline {
    /// Nothing loaded, paused at 0.
    #[must_use]
    pub fn empty(now_ms: i64) -> Self {
        Self { media: None, paused: true, rate: 1.0, position_ms: 0, anchor_ms: now_ms, lead_in_rate: 0.0 }
    }

    /// The position at server time `now_ms`: `position + (now − anchor) × rate` while playing,
    /// and before a future anchor `position − (anchor − now) × lead_in_rate` (a scheduled start
    /// holds the frame, a scheduled rate change plays on at the old rate), capped at the
    /// duration.
    #[must_use]
    pub fn position_at(&self, now_ms: i64) -> i64 {
        if self.paused {
            return self.position_ms;
        }
        let elapsed = now_ms.saturating_sub(self.anchor_ms);
        // Before the anchor (a rate change scheduled ahead) the old rate still runs.
        let rate = if elapsed >= 0 { self.rate } else { self.lead_in_rate };
        #[expect(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            reason = "elapsed milliseconds times a rate of 0.25 to 4, rounded: far inside 2^52"
        )]
        let advanced = self.position_ms.saturating_add((elapsed as f64 * rate).round() as i64).max(0);
        match self.duration_ms() {
            Some(duration) => advanced.min(duration),
            None => advanced,
        }
    }

    /// The known duration of the loaded media.
    #[must_use]
    pub fn duration_ms(&self) -> Option<i64> {
        self.media.as_ref().map(|media| media.duration_ms).filter(|duration| *duration > 0)
    }

    /// Whether playing media of known length has reached its end at `now_ms`.
    #[must_use]
    pub fn has_ended_at(&self, now_ms: i64) -> bool {
        !self.paused && self.duration_ms().is_some_and(|duration| self.position_at(now_ms) >= duration)
    }

    /// Whether a start or a rate change is scheduled after `now_ms`.
    #[must_use]
    pub fn is_scheduled_after(&self, now_ms: i64) -> bool {
        !self.paused && self.anchor_ms > now_ms
    }

    /// The timeline with `rate` from server time `switch_at_ms` on (never before `now_ms`).
    /// Playing, the old rate goes on until then as the lead-in, so that players switch on the
    /// same instant of the timeline instead of each when the change reaches it. Paused, or
    /// with a start or rate change already scheduled, the rate applies from that anchor.
    fn with_rate(&self, rate: f64, switch_at_ms: i64, now_ms: i64) -> Self {
        if self.paused || self.is_scheduled_after(now_ms) {
            return Self { rate, ..self.clone() };
        }
        let switch_at_ms = switch_at_ms.max(now_ms);
        Self {
            rate,
            position_ms: self.position_at(switch_at_ms),
            anchor_ms: switch_at_ms,
            lead_in_rate: self.rate,
            ..self.clone()
        }
    }
}

/// A waiting queue entry.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// Also the media id once played.
    pub media: Media,
    pub added_by_user_id: String,
    pub added_at: i64,
}

/// What a change was, as recorded in the sync log and shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A state nobody changed yet.
    None,
    Play,
    Pause,
    Seek,
    SetRate,
    ChangeMedia,
    QueueAdd,
    QueueRemove,
    QueueMove,
    PlayNext,
    SetWaitForEveryone,
    AutoAdvance,
    WaitPause,
    WaitResume,
}

impl Action {
    /// The stable name stored in the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Play => "play",
            Self::Pause => "pause",
            Self::Seek => "seek",
            Self::SetRate => "set_rate",
            Self::ChangeMedia => "change_media",
            Self::QueueAdd => "queue_add",
            Self::QueueRemove => "queue_remove",
            Self::QueueMove => "queue_move",
            Self::PlayNext => "play_next",
            Self::SetWaitForEveryone => "set_wait_for_everyone",
            Self::AutoAdvance => "auto_advance",
            Self::WaitPause => "wait_pause",
            Self::WaitResume => "wait_resume",
        }
    }

    /// The action stored as `name`; unknown names read as `None`.
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        const ALL: [Action; 14] = [
            Action::None,
            Action::Play,
            Action::Pause,
            Action::Seek,
            Action::SetRate,
            Action::ChangeMedia,
            Action::QueueAdd,
            Action::QueueRemove,
            Action::QueueMove,
            Action::PlayNext,
            Action::SetWaitForEveryone,
            Action::AutoAdvance,
            Action::WaitPause,
            Action::WaitResume,
        ];
        ALL.into_iter().find(|action| action.as_str() == name).unwrap_or(Self::None)
    }
}

/// Everything about one room's playback, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomState {
    pub room_id: RoomId,
    /// 0 for a room nobody changed yet (no stored row).
    pub version: i64,
    pub timeline: Timeline,
    pub queue: Vec<QueueItem>,
    pub wait_for_everyone: bool,
    /// Non-empty while the room is paused waiting for these users.
    pub waiting_for: Vec<String>,
    pub last_action: Action,
    /// Empty for the server itself.
    pub last_action_user_id: String,
    pub updated_at: i64,
}

impl RoomState {
    /// The state of a room without a stored row.
    #[must_use]
    pub fn initial(room_id: &RoomId, now_ms: i64) -> Self {
        Self {
            room_id: room_id.clone(),
            version: 0,
            timeline: Timeline::empty(now_ms),
            queue: Vec::new(),
            wait_for_everyone: false,
            waiting_for: Vec::new(),
            last_action: Action::None,
            last_action_user_id: String::new(),
            updated_at: now_ms,
        }
    }
}

/// A change someone (or the server) asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Play from the current position, starting at server time `start_at_ms`.
    Play {
        start_at_ms: i64,
    },
    /// Pause at `position_ms`, or where the timeline is now.
    Pause {
        position_ms: Option<i64>,
    },
    Seek {
        position_ms: i64,
    },
    /// Play at `rate` from server time `start_at_ms` (see [`Timeline::lead_in_rate`]).
    SetRate {
        rate: f64,
        start_at_ms: i64,
    },
    ChangeMedia {
        media: Media,
    },
    QueueAdd {
        item: QueueItem,
    },
    QueueRemove {
        item_id: String,
    },
    QueueMove {
        item_id: String,
        new_index: usize,
    },
    /// Load the first queue item and play it at `start_at_ms`.
    PlayNext {
        start_at_ms: i64,
    },
    SetWaitForEveryone {
        enabled: bool,
    },
    /// `media_id` ended: play the next item at `start_at_ms`, or stay paused at the end.
    AutoAdvance {
        media_id: String,
        start_at_ms: i64,
    },
    /// Pause for the buffering `users`.
    WaitPause {
        users: Vec<String>,
    },
    /// Everyone is ready (or the wait timed out): play at `start_at_ms`.
    WaitResume {
        start_at_ms: i64,
    },
}

impl Command {
    /// The action this command records.
    #[must_use]
    pub fn action(&self) -> Action {
        match self {
            Self::Play { .. } => Action::Play,
            Self::Pause { .. } => Action::Pause,
            Self::Seek { .. } => Action::Seek,
            Self::SetRate { .. } => Action::SetRate,
            Self::ChangeMedia { .. } => Action::ChangeMedia,
            Self::QueueAdd { .. } => Action::QueueAdd,
            Self::QueueRemove { .. } => Action::QueueRemove,
            Self::QueueMove { .. } => Action::QueueMove,
            Self::PlayNext { .. } => Action::PlayNext,
            Self::SetWaitForEveryone { .. } => Action::SetWaitForEveryone,
            Self::AutoAdvance { .. } => Action::AutoAdvance,
            Self::WaitPause { .. } => Action::WaitPause,
            Self::WaitResume { .. } => Action::WaitResume,
        }
    }
}

/// The state after `command`, version incremented; or why the command does not apply.
///
/// # Errors
/// `FailedPrecondition` when there is nothing to play or the queue item is missing,
/// `InvalidArgument` for a seek past the known end.
/// `user_id` is whoever asked for the change, `None` for the server's own rules.
pub fn apply(state: &RoomState, command: Command, user_id: Option<&UserId>, now_ms: i64) -> Result<RoomState, Error> {
    let mut next = state.clone();
    next.version = state.version + 1;
    next.last_action = command.action();
    next.last_action_user_id = user_id.map(UserId::to_string).unwrap_or_default();
    next.updated_at = now_ms;
    // A person's command ends any wait: they have taken control of the room.
    next.waiting_for.clear();
    let timeline = &state.timeline;
    match command {
        Command::Play { start_at_ms } | Command::WaitResume { start_at_ms } => {
            if timeline.media.is_none() {
                return Err(Error::FailedPrecondition("no media loaded"));
            }
            let mut position_ms = timeline.position_at(now_ms);
            if timeline.duration_ms().is_some_and(|duration| position_ms >= duration) {
                position_ms = 0;
            }
            next.timeline =
                Timeline { paused: false, position_ms, anchor_ms: start_at_ms, lead_in_rate: 0.0, ..timeline.clone() };
        }
        Command::Pause { position_ms } => {
            let position_ms = position_ms.unwrap_or_else(|| timeline.position_at(now_ms));
            let position_ms = clamp_to_duration(timeline, position_ms);
            next.timeline =
                Timeline { paused: true, position_ms, anchor_ms: now_ms, lead_in_rate: 0.0, ..timeline.clone() };
        }
        Command::WaitPause { users } => {
            next.timeline = Timeline {
                paused: true,
                position_ms: timeline.position_at(now_ms),
                anchor_ms: now_ms,
                lead_in_rate: 0.0,
                ..timeline.clone()
            };
            next.waiting_for = users;
        }
        Command::Seek { position_ms } => {
            if timeline.media.is_none() {
                return Err(Error::FailedPrecondition("no media loaded"));
            }
            if timeline.duration_ms().is_some_and(|duration| position_ms > duration) {
                return Err(Violation::new("position_ms", "must not be past the end of the media").into());
            }
            // A seek during a scheduled start keeps the start time; otherwise it applies now
            // (a scheduled rate change with it: the players seek anyway).
            let held_start = timeline.is_scheduled_after(now_ms) && timeline.lead_in_rate == 0.0;
            let anchor_ms = if held_start { timeline.anchor_ms } else { now_ms };
            next.timeline = Timeline { position_ms, anchor_ms, lead_in_rate: 0.0, ..timeline.clone() };
        }
        Command::SetRate { rate, start_at_ms } => {
            next.timeline = timeline.with_rate(rate, start_at_ms, now_ms);
        }
        Command::ChangeMedia { media } => {
            next.timeline = Timeline { media: Some(media), ..Timeline::empty(now_ms) };
            next.timeline.rate = timeline.rate;
        }
        Command::QueueAdd { item } => {
            if state.queue.len() >= MAX_QUEUE_ITEMS {
                return Err(Error::FailedPrecondition("the queue is full"));
            }
            next.queue.push(item);
        }
        Command::QueueRemove { item_id } => {
            let index = queue_index(state, &item_id)?;
            next.queue.remove(index);
        }
        Command::QueueMove { item_id, new_index } => {
            let index = queue_index(state, &item_id)?;
            let item = next.queue.remove(index);
            let new_index = new_index.min(next.queue.len());
            next.queue.insert(new_index, item);
        }
        Command::PlayNext { start_at_ms } => {
            if next.queue.is_empty() {
                return Err(Error::FailedPrecondition("the queue is empty"));
            }
            let item = next.queue.remove(0);
            next.timeline = play_from_start(item.media, timeline.rate, start_at_ms);
        }
        Command::AutoAdvance { media_id, start_at_ms } => {
            if timeline.media.as_ref().is_none_or(|media| media.media_id != media_id) {
                return Err(Error::FailedPrecondition("that media is no longer playing"));
            }
            if next.queue.is_empty() {
                let end = timeline.duration_ms().unwrap_or_else(|| timeline.position_at(now_ms));
                next.timeline = Timeline {
                    paused: true,
                    position_ms: end,
                    anchor_ms: now_ms,
                    lead_in_rate: 0.0,
                    ..timeline.clone()
                };
            } else {
                let item = next.queue.remove(0);
                next.timeline = play_from_start(item.media, timeline.rate, start_at_ms);
            }
        }
        Command::SetWaitForEveryone { enabled } => {
            next.wait_for_everyone = enabled;
        }
    }
    Ok(next)
}

fn play_from_start(media: Media, rate: f64, start_at_ms: i64) -> Timeline {
    Timeline { media: Some(media), paused: false, rate, position_ms: 0, anchor_ms: start_at_ms, lead_in_rate: 0.0 }
}

fn clamp_to_duration(timeline: &Timeline, position_ms: i64) -> i64 {
    match timeline.duration_ms() {
        Some(duration) => position_ms.min(duration),
        None => position_ms,
    }
}

fn queue_index(state: &RoomState, item_id: &str) -> Result<usize, Error> {
    state.queue.iter().position(|item| item.media.media_id == item_id).ok_or(Error::QueueItemNotFound)
}

/// The server time a scheduled start or rate change happens at: `requested` (a time already
/// past means now), else now plus `default_lead_ms`.
///
/// # Errors
/// A violation of `field` for a time more than `max_ahead_ms` ahead.
pub fn schedule_at(
    now_ms: i64,
    requested: Option<i64>,
    default_lead_ms: i64,
    max_ahead_ms: i64,
    field: &str,
) -> Result<i64, Violation> {
    match requested {
        Some(requested) if requested > now_ms.saturating_add(max_ahead_ms) => {
            Err(Violation::new(field, "must be at most 10 s ahead of the server's time"))
        }
        Some(requested) => Ok(requested.max(now_ms)),
        None => Ok(now_ms.saturating_add(default_lead_ms)),
    }
}

/// Checks a playback rate.
///
/// # Errors
/// A violation of `field` for NaN, infinities and rates outside 0.25–4.
pub fn check_rate(field: &str, rate: f64) -> Result<f64, Violation> {
    if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(Violation::new(field, "must be a number from 0.25 to 4"))
    }
}

/// Checks where media comes from: a URL (see [`check_url`]) or, instead, a media library item
/// id (a UUID); returns both, one of them empty.
///
/// # Errors
/// Every violation: both or neither given, a bad URL, an id that is not a UUID.
pub fn check_media_source(url: &str, library_item_id: &str) -> Result<(String, String), Vec<Violation>> {
    let library_item_id = library_item_id.trim();
    if library_item_id.is_empty() {
        return check_url("url", url).map(|url| (url, String::new())).map_err(|violation| vec![violation]);
    }
    let mut violations = Vec::new();
    if !url.trim().is_empty() {
        violations.push(Violation::new("url", "must be empty when library_item_id is set"));
    }
    match uuid::Uuid::try_parse(library_item_id) {
        Ok(id) if violations.is_empty() => Ok((String::new(), id.to_string())),
        Ok(_) => Err(violations),
        Err(_) => {
            violations.push(Violation::new("library_item_id", "must be a media library item id"));
            Err(violations)
        }
    }
}

/// Checks a media URL: http(s), a host, no whitespace or control characters, bounded length.
///
/// # Errors
/// A violation of `field` describing the problem.
pub fn check_url(field: &str, url: &str) -> Result<String, Violation> {
    let url = url.trim();
    if url.is_empty() {
        return Err(Violation::new(field, "must not be empty"));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(Violation::new(field, format!("must be at most {MAX_URL_BYTES} bytes")));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Violation::new(field, "must not contain spaces or control characters"));
    }
    let lower = url.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err(Violation::new(field, "must be an http or https URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(Violation::new(field, "must name a host"));
    }
    Ok(url.to_owned())
}

/// Checks a position or duration in milliseconds.
///
/// # Errors
/// A violation of `field` when negative.
pub fn check_non_negative(field: &str, value: i64) -> Result<i64, Violation> {
    if value >= 0 { Ok(value) } else { Err(Violation::new(field, "must not be negative")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::issued("u".to_owned())
    }

    const T0: i64 = 1_800_000_000_000;

    fn media(id: &str, duration_ms: i64) -> Media {
        Media {
            media_id: id.to_owned(),
            url: format!("https://v.example/{id}.webm"),
            title: id.to_owned(),
            duration_ms,
            library_item_id: String::new(),
        }
    }

    fn loaded(duration_ms: i64) -> RoomState {
        let state = RoomState::initial(&RoomId::issued("room".to_owned()), T0);
        apply(&state, Command::ChangeMedia { media: media("a", duration_ms) }, Some(&user()), T0).unwrap()
    }

    #[test]
    fn playing_position_extrapolates_with_rate() {
        let state = loaded(0);
        let playing = apply(&state, Command::Play { start_at_ms: T0 }, Some(&user()), T0).unwrap();
        assert_eq!(playing.timeline.position_at(T0 + 10_000), 10_000);
        let faster =
            apply(&playing, Command::SetRate { rate: 2.0, start_at_ms: T0 + 10_000 }, Some(&user()), T0 + 10_000)
                .unwrap();
        assert_eq!(faster.timeline.position_ms, 10_000, "re-anchored where playback was");
        assert_eq!(faster.timeline.position_at(T0 + 11_000), 12_000);
        let paused = apply(&faster, Command::Pause { position_ms: None }, Some(&user()), T0 + 12_000).unwrap();
        assert_eq!(paused.timeline.position_at(T0 + 60_000), 14_000);
        assert_eq!(paused.version, 4);
    }

    #[test]
    fn a_scheduled_rate_change_plays_on_at_the_old_rate_until_its_instant() {
        let state = loaded(0);
        let playing = apply(&state, Command::Play { start_at_ms: T0 }, Some(&user()), T0).unwrap();
        let change =
            apply(&playing, Command::SetRate { rate: 1.5, start_at_ms: T0 + 10_300 }, Some(&user()), T0 + 10_000)
                .unwrap();
        let timeline = &change.timeline;
        assert_eq!((timeline.anchor_ms, timeline.position_ms, timeline.lead_in_rate), (T0 + 10_300, 10_300, 1.0));
        assert_eq!(timeline.position_at(T0 + 10_000), 10_000, "no jump when the change is accepted");
        assert_eq!(timeline.position_at(T0 + 10_200), 10_200, "the old rate until the instant");
        assert_eq!(timeline.position_at(T0 + 11_300), 11_800, "the new rate from it");
        assert!(timeline.is_scheduled_after(T0 + 10_299) && !timeline.is_scheduled_after(T0 + 10_300));

        // Another change before the instant replaces the rate; the instant and the lead-in stay.
        let changed_again =
            apply(&change, Command::SetRate { rate: 0.5, start_at_ms: T0 + 10_500 }, Some(&user()), T0 + 10_100)
                .unwrap();
        let timeline = &changed_again.timeline;
        assert_eq!((timeline.anchor_ms, timeline.position_ms, timeline.lead_in_rate), (T0 + 10_300, 10_300, 1.0));
        assert_eq!(timeline.position_at(T0 + 11_300), 10_800);

        // A seek before the instant applies now, at the new rate: the players seek anyway.
        let sought = apply(&change, Command::Seek { position_ms: 50_000 }, Some(&user()), T0 + 10_100).unwrap();
        let timeline = &sought.timeline;
        assert_eq!((timeline.anchor_ms, timeline.lead_in_rate, timeline.rate), (T0 + 10_100, 0.0, 1.5));
        assert_eq!(timeline.position_at(T0 + 11_100), 51_500);

        // A pause before the instant stops where the old rate got to.
        let paused = apply(&change, Command::Pause { position_ms: None }, Some(&user()), T0 + 10_200).unwrap();
        assert_eq!(paused.timeline.position_ms, 10_200);
        assert!(!paused.timeline.is_scheduled_after(T0));
    }

    #[test]
    fn a_rate_change_while_paused_or_before_a_start_waits_for_the_start() {
        let state = loaded(0);
        let paused_faster =
            apply(&state, Command::SetRate { rate: 2.0, start_at_ms: T0 + 300 }, Some(&user()), T0).unwrap();
        assert_eq!(paused_faster.timeline.position_at(T0 + 5_000), 0);
        assert_eq!(paused_faster.timeline.rate, 2.0);

        let scheduled = apply(&state, Command::Play { start_at_ms: T0 + 500 }, Some(&user()), T0).unwrap();
        let faster =
            apply(&scheduled, Command::SetRate { rate: 2.0, start_at_ms: T0 + 900 }, Some(&user()), T0 + 100).unwrap();
        let timeline = &faster.timeline;
        assert_eq!((timeline.anchor_ms, timeline.lead_in_rate), (T0 + 500, 0.0), "still a held start at T0 + 500");
        assert_eq!(timeline.position_at(T0 + 400), 0);
        assert_eq!(timeline.position_at(T0 + 1_500), 2_000);
    }

    #[test]
    fn scheduling_bounds_the_requested_instant() {
        assert_eq!(schedule_at(T0, None, 300, 10_000, "start_time"), Ok(T0 + 300));
        assert_eq!(schedule_at(T0, Some(T0 - 5), 300, 10_000, "start_time"), Ok(T0), "past means now");
        assert_eq!(schedule_at(T0, Some(T0 + 10_000), 300, 10_000, "start_time"), Ok(T0 + 10_000));
        assert!(schedule_at(T0, Some(T0 + 10_001), 300, 10_000, "start_time").is_err());
    }

    #[test]
    fn scheduled_play_holds_until_the_start_time() {
        let state = loaded(0);
        let scheduled = apply(&state, Command::Play { start_at_ms: T0 + 500 }, Some(&user()), T0).unwrap();
        assert_eq!(scheduled.timeline.position_at(T0 + 200), 0);
        assert_eq!(scheduled.timeline.position_at(T0 + 500), 0);
        assert_eq!(scheduled.timeline.position_at(T0 + 1500), 1000);
    }

    #[test]
    fn position_stops_at_the_known_end() {
        let state = loaded(5_000);
        let playing = apply(&state, Command::Play { start_at_ms: T0 }, Some(&user()), T0).unwrap();
        assert!(!playing.timeline.has_ended_at(T0 + 4_999));
        assert!(playing.timeline.has_ended_at(T0 + 5_000));
        assert_eq!(playing.timeline.position_at(T0 + 9_000), 5_000);
        assert!(matches!(
            apply(&state, Command::Seek { position_ms: 5_001 }, Some(&user()), T0),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn queue_add_move_remove_and_advance() {
        let mut state = loaded(1_000);
        for id in ["q1", "q2", "q3"] {
            let item = QueueItem { media: media(id, 1_000), added_by_user_id: "u".to_owned(), added_at: T0 };
            state = apply(&state, Command::QueueAdd { item }, Some(&user()), T0).unwrap();
        }
        state =
            apply(&state, Command::QueueMove { item_id: "q3".to_owned(), new_index: 0 }, Some(&user()), T0).unwrap();
        let order: Vec<_> = state.queue.iter().map(|item| item.media.media_id.as_str()).collect();
        assert_eq!(order, ["q3", "q1", "q2"]);
        state = apply(&state, Command::QueueRemove { item_id: "q1".to_owned() }, Some(&user()), T0).unwrap();
        assert!(matches!(
            apply(&state, Command::QueueRemove { item_id: "q1".to_owned() }, Some(&user()), T0),
            Err(Error::QueueItemNotFound)
        ));
        let advanced =
            apply(&state, Command::AutoAdvance { media_id: "a".to_owned(), start_at_ms: T0 + 300 }, None, T0).unwrap();
        assert_eq!(advanced.timeline.media.as_ref().unwrap().media_id, "q3");
        assert!(!advanced.timeline.paused);
        assert_eq!(advanced.queue.len(), 1);
        let stale = apply(&advanced, Command::AutoAdvance { media_id: "a".to_owned(), start_at_ms: T0 }, None, T0);
        assert!(matches!(stale, Err(Error::FailedPrecondition(_))), "a late end report skips nothing");
    }

    #[test]
    fn auto_advance_on_an_empty_queue_pauses_at_the_end() {
        let state = loaded(2_000);
        let playing = apply(&state, Command::Play { start_at_ms: T0 }, Some(&user()), T0).unwrap();
        let ended =
            apply(&playing, Command::AutoAdvance { media_id: "a".to_owned(), start_at_ms: T0 }, None, T0 + 2_500)
                .unwrap();
        assert!(ended.timeline.paused);
        assert_eq!(ended.timeline.position_ms, 2_000);
        let replay = apply(&ended, Command::Play { start_at_ms: T0 + 3_000 }, Some(&user()), T0 + 2_600).unwrap();
        assert_eq!(replay.timeline.position_ms, 0, "play at the end starts over");
    }

    #[test]
    fn wait_pause_records_who_and_commands_clear_it() {
        let state = loaded(0);
        let playing = apply(&state, Command::Play { start_at_ms: T0 }, Some(&user()), T0).unwrap();
        let waiting = apply(&playing, Command::WaitPause { users: vec!["b".to_owned()] }, None, T0 + 1_000).unwrap();
        assert!(waiting.timeline.paused);
        assert_eq!(waiting.timeline.position_ms, 1_000);
        assert_eq!(waiting.waiting_for, ["b"]);
        let resumed = apply(&waiting, Command::WaitResume { start_at_ms: T0 + 1_300 }, None, T0 + 1_000).unwrap();
        assert!(resumed.waiting_for.is_empty());
        assert!(!resumed.timeline.paused);
    }

    #[test]
    fn input_checks() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.2, 4.01, -1.0] {
            assert!(check_rate("rate", bad).is_err(), "{bad}");
        }
        assert!(check_rate("rate", 0.25).is_ok() && check_rate("rate", 4.0).is_ok());
        for bad in ["", "ftp://h/x", "javascript:alert(1)", "https://", "https:///x", "http://a b", "file:///etc"] {
            assert!(check_url("url", bad).is_err(), "{bad}");
        }
        assert!(check_url("url", &format!("https://h/{}", "a".repeat(MAX_URL_BYTES))).is_err());
        assert_eq!(check_url("url", " https://h.example/v.mp4 ").unwrap(), "https://h.example/v.mp4");
        assert!(check_non_negative("position_ms", -1).is_err());
    }
}
