//! The room rules: creating, joining (with passwords and their attempt limits), leaving with
//! ownership hand-over, moderation, access checks for sync-svc and chat-svc, the idle janitor
//! and the audit log. Every change and its audit row commit together; its event is published
//! only after the commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use svc_kit::auth::Caller;
use svc_kit::clock::{SharedClock, millis};
use svc_kit::id::{RoomId, UserId};
use svc_kit::metrics::{Refusal, refusal_counter, registered};
use svc_kit::ratelimit::KeyedLimiter;
use svc_kit::status::Violation;
use svc_kit::text::TextRule;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::Config;
use crate::events::{Change, EventBus, RoomEvent};
use crate::model::{AuditEntry, CloseReason, ControlMode, Member, RemovalReason, Role, Room, RoomStatus, Visibility};
use crate::permissions::{Action, allows};
use crate::store::{AuditFilter, AuditRecord, NewRoom, RoomChanges, Store, StoredRoom, Tx};

/// Room names: 1 to 64 characters, one line.
pub const ROOM_NAME: TextRule = TextRule { field: "name", min_chars: 1, max_chars: 64, allow_newline: false };
/// Room descriptions: up to 500 characters, line breaks allowed.
pub const ROOM_DESCRIPTION: TextRule =
    TextRule { field: "description", min_chars: 0, max_chars: 500, allow_newline: true };
/// bcrypt reads at most 72 bytes; longer passwords are refused rather than silently cut.
pub const PASSWORD_MAX_BYTES: usize = 72;
pub const PASSWORD_MIN_BYTES: usize = 8;
const DEFAULT_ROOM_PAGE: u64 = 20;
const MAX_ROOM_PAGE: u64 = 100;
pub(crate) const DEFAULT_AUDIT_PAGE: u64 = 100;
pub(crate) const MAX_AUDIT_PAGE: u64 = 500;
const JANITOR_BATCH: u64 = 100;
/// Every action the audit log records, the words operators filter by.
pub const AUDIT_ACTIONS: [&str; 9] = [
    "room.create",
    "room.update",
    "room.transfer_ownership",
    "room.close",
    "member.join",
    "member.join_refused",
    "member.leave",
    "member.set_role",
    "member.kick",
];

/// Display names come from session-svc; the domain only needs this one question answered.
#[tonic::async_trait]
pub trait DisplayNames: Send + Sync + std::fmt::Debug {
    /// Names of the users among `user_ids` whose sessions still exist.
    async fn display_names(&self, user_ids: Vec<String>) -> Result<HashMap<String, String>, Error>;
}

/// room-svc's domain counters and gauges; monitor-svc alerts on bursts of the counters.
#[derive(Debug, Clone)]
pub struct RoomMetrics {
    active: IntGauge,
    wrong_passwords: IntCounter,
    permission_denied: IntCounter,
    flood_limited: IntCounter,
}

impl RoomMetrics {
    /// Creates and registers the metrics.
    #[must_use]
    pub fn new(registry: &prometheus::Registry) -> Self {
        Self {
            active: registered(registry, IntGauge::new("xiaowo_rooms_active", "Open rooms.")),
            wrong_passwords: registered(
                registry,
                IntCounter::new("xiaowo_room_wrong_password_total", "Joins refused for a wrong password."),
            ),
            permission_denied: refusal_counter(registry, Refusal::PermissionDenied, "room"),
            flood_limited: refusal_counter(registry, Refusal::FloodLimited, "room"),
        }
    }
}

/// Counters other services may export under the same name carry `service="room"`, so that they
/// can share one process's registry.
/// A new room's settings as requested.
#[derive(Debug, Clone)]
pub struct CreateRoom {
    pub name: String,
    pub description: String,
    pub visibility: Visibility,
    /// Empty for none.
    pub password: String,
    pub control_mode: ControlMode,
}

/// Settings to change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct UpdateRoom {
    pub name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
    pub password: Option<String>,
    pub clear_password: bool,
    pub control_mode: Option<ControlMode>,
}

impl UpdateRoom {
    /// The request with its texts normalised, or every violation in it.
    ///
    /// # Errors
    /// Each field that breaks its rule.
    pub fn checked(self) -> Result<Self, Vec<Violation>> {
        let Self { name, description, visibility, password, clear_password, control_mode } = self;
        let mut violations = Vec::new();
        let name = name.and_then(|name| checked(&mut violations, ROOM_NAME.check(&name)));
        let description =
            description.and_then(|description| checked(&mut violations, ROOM_DESCRIPTION.check(&description)));
        if let Some(password) = &password {
            violations.extend(password_violation("password", password));
            if clear_password {
                violations.push(Violation::new("clear_password", "cannot be combined with password"));
            }
        }
        if violations.is_empty() {
            Ok(Self { name, description, visibility, password, clear_password, control_mode })
        } else {
            Err(violations)
        }
    }
}

/// What a user may do in a room, for sync-svc and chat-svc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub status: RoomStatus,
    pub control_mode: ControlMode,
    pub role: Option<Role>,
    pub can_control: bool,
    pub can_moderate: bool,
}

/// A member's view of their own membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub member: Member,
    pub can_control: bool,
    pub can_moderate: bool,
    pub can_manage: bool,
}

/// Which audit rows an operator asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub room_id: Option<RoomId>,
    pub user_id: Option<UserId>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// One of [`AUDIT_ACTIONS`].
    pub action: Option<&'static str>,
    pub newest_first: bool,
    pub page_size: i32,
    pub page_token: String,
}

/// An audit action filter from a request: empty for all, else one of [`AUDIT_ACTIONS`].
///
/// # Errors
/// A word the audit log never records.
pub fn audit_action(action: &str) -> Result<Option<&'static str>, Violation> {
    if action.is_empty() {
        return Ok(None);
    }
    AUDIT_ACTIONS
        .iter()
        .find(|known| **known == action)
        .map(|known| Some(*known))
        .ok_or_else(|| Violation::new("action", format!("must be one of {}", AUDIT_ACTIONS.join(", "))))
}

/// The room domain.
#[derive(Debug)]
pub struct Rooms {
    store: Store,
    clock: SharedClock,
    events: Arc<dyn EventBus>,
    names: Arc<dyn DisplayNames>,
    per_caller_attempts: KeyedLimiter,
    per_address_attempts: KeyedLimiter,
    per_room_attempts: KeyedLimiter,
    per_caller_creates: Option<KeyedLimiter>,
    per_address_creates: Option<KeyedLimiter>,
    max_open_per_owner: u64,
    bcrypt_cost: u32,
    idle_ms: i64,
    kick_ban_ms: i64,
    max_members: u64,
    metrics: RoomMetrics,
}

pub(crate) fn page_size(value: i32, default: u64, max: u64) -> Result<u64, Violation> {
    match u64::try_from(value) {
        Ok(0) => Ok(default),
        Ok(size) if size <= max => Ok(size),
        _ => Err(Violation::new("page_size", format!("must be 0 to {max}"))),
    }
}

pub(crate) fn password_violation(field: &str, password: &str) -> Option<Violation> {
    let bytes = password.len();
    (!(PASSWORD_MIN_BYTES..=PASSWORD_MAX_BYTES).contains(&bytes))
        .then(|| Violation::new(field, format!("must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes (UTF-8)")))
}

/// Keeps the value of a check, or records its violation.
pub(crate) fn checked<T>(violations: &mut Vec<Violation>, result: Result<T, Violation>) -> Option<T> {
    result.map_err(|violation| violations.push(violation)).ok()
}

fn decode_room_token(token: &str) -> Result<Option<(i64, String)>, Violation> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Violation::new("page_token", "not a token from a previous page");
    let (last_active_at, room_id) = token.split_once('.').ok_or_else(invalid)?;
    let last_active_at = last_active_at.parse().map_err(|_| invalid())?;
    let room_id = uuid::Uuid::parse_str(room_id).map_err(|_| invalid())?;
    Ok(Some((last_active_at, room_id.to_string())))
}

pub(crate) fn decode_audit_token(token: &str) -> Result<Option<(i64, i64)>, Violation> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Violation::new("page_token", "not a token from a previous page");
    let (created_at, id) = token.split_once('.').ok_or_else(invalid)?;
    Ok(Some((created_at.parse().map_err(|_| invalid())?, id.parse().map_err(|_| invalid())?)))
}

/// Cuts a page fetched with one extra row; the next page's token when there is more.
fn paginate<T>(mut rows: Vec<T>, page_size: u64, token: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    if rows.len() as u64 > page_size {
        rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let next = rows.last().map(token);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// A limiter of `count` per hour with a burst of `count`; `None` (no limit) for 0.
fn per_hour(count: u32) -> Option<KeyedLimiter> {
    (count > 0).then(|| KeyedLimiter::new(count, f64::from(count) / 3600.0))
}

/// The longest a wrong password is held back while its room is being guessed at: long enough to
/// slow guessing from many sessions at once, short enough not to tie up a connection.
const GUARDED_ROOM_HOLD: Duration = Duration::from_secs(2);

fn active(stored: Option<StoredRoom>) -> Result<StoredRoom, Error> {
    let stored = stored.ok_or(Error::RoomNotFound)?;
    match stored.room.status {
        RoomStatus::Active => Ok(stored),
        RoomStatus::Closed => Err(Error::RoomClosed),
    }
}

impl Rooms {
    #[must_use]
    pub fn new(
        store: Store,
        clock: SharedClock,
        events: Arc<dyn EventBus>,
        names: Arc<dyn DisplayNames>,
        config: &Config,
        metrics: RoomMetrics,
    ) -> Self {
        let per_minute = |count: u32| f64::from(count) / 60.0;
        Self {
            store,
            clock,
            events,
            names,
            per_caller_attempts: KeyedLimiter::new(
                config.password_attempts_per_caller,
                per_minute(config.password_attempts_per_caller),
            ),
            per_address_attempts: KeyedLimiter::new(
                config.password_attempts_per_address,
                per_minute(config.password_attempts_per_address),
            ),
            per_room_attempts: KeyedLimiter::new(
                config.password_attempts_per_room,
                per_minute(config.password_attempts_per_room),
            ),
            per_caller_creates: per_hour(config.creates_per_caller),
            per_address_creates: per_hour(config.creates_per_address),
            max_open_per_owner: u64::from(config.max_open_per_owner),
            bcrypt_cost: config.bcrypt_cost,
            idle_ms: millis(config.idle_timeout),
            kick_ban_ms: millis(config.kick_ban),
            max_members: u64::from(config.max_members),
            metrics,
        }
    }

    /// The bus that carries this service's room events.
    #[must_use]
    pub fn events(&self) -> &dyn EventBus {
        self.events.as_ref()
    }

    fn publish(&self, room_id: &RoomId, changes: Vec<Change>) {
        let at_ms = self.clock.now_ms();
        for change in changes {
            self.events.publish(RoomEvent { room_id: room_id.to_owned(), at_ms, change });
        }
    }

    /// Refuses `action` unless `role` may perform it, counting refusals.
    fn authorize(&self, action: Action, role: Option<Role>, mode: ControlMode) -> Result<(), Error> {
        if allows(action, role, mode) {
            Ok(())
        } else {
            self.metrics.permission_denied.inc();
            Err(Error::Forbidden("your role in this room does not allow this"))
        }
    }

    async fn refresh_active_gauge(&self) {
        match self.store.count_active().await {
            Ok(count) => self.metrics.active.set(i64::try_from(count).unwrap_or(i64::MAX)),
            Err(error) => tracing::warn!(%error, "cannot count active rooms"),
        }
    }

    async fn hash_password(&self, password: String) -> Result<String, Error> {
        let cost = self.bcrypt_cost;
        // The length was checked (at most 72 bytes): bcrypt reads every byte of it. Its
        // `non_truncating_*` variants would refuse 72 bytes because of the terminating NUL.
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|error| Error::Hashing(Box::new(error)))?
            .map_err(|error| Error::Hashing(Box::new(error)))
    }

    async fn password_matches(&self, password: String, hash: String) -> Result<bool, Error> {
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map_err(|error| Error::Hashing(Box::new(error)))?
            .map_err(|error| Error::Hashing(Box::new(error)))
    }

    /// Display names for `user_ids`. A member list without names beats no member list, and a
    /// change that already committed must not fail afterwards: when session-svc cannot answer,
    /// names are left empty.
    async fn names_of(&self, user_ids: Vec<String>) -> HashMap<String, String> {
        match self.names.display_names(user_ids).await {
            Ok(names) => names,
            Err(error) => {
                tracing::warn!(%error, "display names unavailable");
                HashMap::new()
            }
        }
    }

    async fn member(&self, user_id: &UserId, role: Role, joined_at: i64) -> Member {
        let display_name = self.names_of(vec![user_id.to_string()]).await.remove(user_id.as_str()).unwrap_or_default();
        Member { user_id: user_id.to_string(), display_name, role, joined_at }
    }

    /// Opens a room owned by `caller`.
    /// Opens a room owned by `caller`, who called from `address` (a limiter key). Creating is
    /// limited per session and per address (so that nobody floods the lobby), and a session may
    /// own only so many open rooms at once.
    pub async fn create(&self, caller: &UserId, address: &str, request: CreateRoom) -> Result<Room, Error> {
        let CreateRoom { name, description, visibility, password, control_mode } = request;
        let mut violations = Vec::new();
        let name = checked(&mut violations, ROOM_NAME.check(&name));
        let description = checked(&mut violations, ROOM_DESCRIPTION.check(&description));
        if !password.is_empty() {
            violations.extend(password_violation("password", &password));
        }
        let (Some(name), Some(description), true) = (name, description, violations.is_empty()) else {
            return Err(Error::InvalidArgument(violations));
        };
        let limits: Vec<_> =
            [(self.per_caller_creates.as_ref(), caller.as_str()), (self.per_address_creates.as_ref(), address)]
                .into_iter()
                .filter_map(|(limiter, key)| limiter.map(|limiter| (limiter, key)))
                .collect();
        // Checked before the password is hashed, taken once nothing else refuses the room.
        if let Some(retry_after) = limits.iter().filter_map(|(limiter, key)| limiter.wait(key)).max() {
            self.metrics.flood_limited.inc();
            return Err(Error::CreateLimited(retry_after));
        }
        let password_hash = if password.is_empty() { None } else { Some(self.hash_password(password).await?) };
        let has_password = password_hash.is_some();
        let room_id = RoomId::generate();
        let now = self.clock.now_ms();
        let tx = self.store.write().await?;
        if self.max_open_per_owner > 0 {
            let (open, least_active) = tx.open_rooms_owned_by(caller).await?;
            if open >= self.max_open_per_owner {
                self.metrics.flood_limited.inc();
                // The idle janitor closes the least active of them first.
                let closes_at = least_active.unwrap_or(now).saturating_add(self.idle_ms);
                let retry_after = Duration::from_millis(u64::try_from(closes_at - now).unwrap_or(0));
                return Err(Error::TooManyOpenRooms { open, retry_after });
            }
        }
        if let Err(retry_after) = svc_kit::ratelimit::try_take_all(&limits) {
            self.metrics.flood_limited.inc();
            return Err(Error::CreateLimited(retry_after));
        }
        tx.insert_room(NewRoom {
            room_id: room_id.clone(),
            name: name.clone(),
            description,
            visibility,
            control_mode,
            password_hash,
            owner_id: caller.clone(),
            now,
        })
        .await?;
        let detail = serde_json::json!({
            "name": name,
            "visibility": visibility.as_str(),
            "control_mode": control_mode.as_str(),
            "has_password": has_password,
        });
        audit(&tx, now, "room.create", caller, &room_id, None, detail).await?;
        let room = active(tx.room(&room_id).await?)?.room;
        tx.commit().await?;
        tracing::info!(%room_id, owner_id = %caller, "room created");
        self.refresh_active_gauge().await;
        Ok(room)
    }

    /// A room and `caller`'s role in it.
    pub async fn get(&self, caller: &UserId, room_id: &RoomId) -> Result<(Room, Option<Role>), Error> {
        let stored = self.store.room(room_id).await?.ok_or(Error::RoomNotFound)?;
        let role = self.store.role(room_id, caller).await?;
        Ok((stored.room, role))
    }

    /// A page of public active rooms, most recently active first, and the next page's token.
    pub async fn list_public(&self, page_size: i32, page_token: &str) -> Result<(Vec<Room>, Option<String>), Error> {
        let (page_size, after) = room_page(page_size, page_token)?;
        let rooms = self.store.list_public(after, page_size + 1).await?;
        Ok(paginate(rooms, page_size, room_token))
    }

    /// A page of every room in `status` (`None` for all), unlisted ones included, most recently
    /// active first: the operator's view.
    pub async fn list_all(
        &self,
        status: Option<RoomStatus>,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Room>, Option<String>), Error> {
        let (page_size, after) = room_page(page_size, page_token)?;
        let rooms = self.store.list_all(status, after, page_size + 1).await?;
        Ok(paginate(rooms, page_size, room_token))
    }

    /// A page of the active rooms `caller` is in, most recently active first.
    pub async fn list_mine(
        &self,
        caller: &UserId,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Room>, Option<String>), Error> {
        let (page_size, after) = room_page(page_size, page_token)?;
        let rooms = self.store.list_for_member(caller, after, page_size + 1).await?;
        Ok(paginate(rooms, page_size, room_token))
    }

    /// Joins `caller`, who called from `address` (a limiter key), to the room. A member joining
    /// again gets their membership back without any password or limit; a wrong password counts
    /// against the caller's, the address's and the room's attempt limits.
    pub async fn join(
        &self,
        caller: &Caller,
        address: &str,
        room_id: &RoomId,
        password: String,
    ) -> Result<(Room, Member), Error> {
        if password.len() > PASSWORD_MAX_BYTES {
            // No room password can be this long, and bcrypt would only look at a prefix.
            return Err(Violation::new("password", format!("must be at most {PASSWORD_MAX_BYTES} bytes")).into());
        }
        let user_id = &caller.user_id;
        let stored = active(self.store.room(room_id).await?)?;
        if let Some(member) = self.existing_member(room_id, user_id, &caller.display_name).await? {
            return Ok((stored.room, member));
        }
        self.check_ban(self.store.ban_until(room_id, user_id).await?)?;
        if let Some(hash) = &stored.password_hash {
            self.check_password(room_id, user_id, address, password, hash.clone()).await?;
        }

        let now = self.clock.now_ms();
        let tx = self.store.write().await?;
        let current = active(tx.room(room_id).await?)?;
        if current.password_hash != stored.password_hash {
            // The password changed while this one was being checked.
            return Err(Error::Aborted);
        }
        if tx.role(room_id, user_id).await?.is_some() {
            drop(tx);
            let member = self.existing_member(room_id, user_id, &caller.display_name).await?;
            return member.map(|member| (current.room, member)).ok_or(Error::Aborted);
        }
        self.check_ban(tx.ban_until(room_id, user_id).await?)?;
        if current.room.member_count >= self.max_members {
            return Err(Error::RoomFull);
        }
        tx.insert_member(room_id, user_id, Role::Member, now).await?;
        tx.touch(room_id, now).await?;
        audit(&tx, now, "member.join", user_id, room_id, None, serde_json::json!({})).await?;
        let room = active(tx.room(room_id).await?)?.room;
        tx.commit().await?;
        self.publish(room_id, vec![Change::MemberJoined { user_id: user_id.clone() }]);
        let member = Member {
            user_id: user_id.to_string(),
            display_name: caller.display_name.clone(),
            role: Role::Member,
            joined_at: now,
        };
        Ok((room, member))
    }

    async fn existing_member(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        display_name: &str,
    ) -> Result<Option<Member>, Error> {
        Ok(self.store.member(room_id, user_id).await?.map(|(role, joined_at)| Member {
            user_id: user_id.to_string(),
            display_name: display_name.to_owned(),
            role,
            joined_at,
        }))
    }

    fn check_ban(&self, banned_until: Option<i64>) -> Result<(), Error> {
        let now = self.clock.now_ms();
        match banned_until {
            Some(until) if until > now => {
                Err(Error::Banned(Duration::from_millis(u64::try_from(until - now).unwrap_or(0))))
            }
            _ => Ok(()),
        }
    }

    /// Checks a join password. Guessing is bounded per session and per address, both checked
    /// before any work; a session or address past its limit is refused whatever it sends. The
    /// room's own limit never refuses the right password — friends given it must get in while
    /// strangers guess — but past it every wrong answer is held back and refused as a flood,
    /// which slows guessing spread over many sessions and addresses.
    async fn check_password(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        address: &str,
        password: String,
        hash: String,
    ) -> Result<(), Error> {
        if password.is_empty() {
            // Not a guess: the client did not know the room needs a password.
            return Err(Error::WrongPassword);
        }
        let guesser = [(&self.per_caller_attempts, user_id.as_str()), (&self.per_address_attempts, address)];
        if let Some(wait) = guesser.iter().filter_map(|(limiter, key)| limiter.wait(key)).max() {
            self.metrics.flood_limited.inc();
            return Err(Error::RateLimited(wait));
        }
        if self.password_matches(password, hash).await? {
            return Ok(());
        }
        // Only failures count, so that people who know the password are never slowed down.
        for (limiter, key) in guesser {
            let _ = limiter.try_take(key);
        }
        let room_guarded = self.per_room_attempts.try_take(room_id.as_str()).err();
        self.metrics.wrong_passwords.inc();
        tracing::info!(%room_id, %user_id, %address, "wrong room password");
        // Guessing is what an audit reader looks for: each wrong password leaves a row (the
        // limiters bound how many), marked when it used up the last attempt of the session, the
        // address or the room.
        let limit_reached = room_guarded.is_some()
            || !self.per_room_attempts.has_token(room_id.as_str())
            || guesser.iter().any(|(limiter, key)| !limiter.has_token(key));
        let detail = serde_json::json!({ "reason": "wrong_password", "limit_reached": limit_reached });
        let tx = self.store.write().await?;
        audit(&tx, self.clock.now_ms(), "member.join_refused", user_id, room_id, None, detail).await?;
        tx.commit().await?;
        if let Some(wait) = room_guarded {
            self.metrics.flood_limited.inc();
            tokio::time::sleep(wait.min(GUARDED_ROOM_HOLD)).await;
            return Err(Error::RateLimited(wait));
        }
        Err(Error::WrongPassword)
    }

    /// Takes `caller` out of the room. An owner hands the room to the longest-standing
    /// moderator, else member; the last one out closes it.
    pub async fn leave(&self, caller: &UserId, room_id: &RoomId) -> Result<(), Error> {
        let now = self.clock.now_ms();
        let tx = self.store.write().await?;
        active(tx.room(room_id).await?)?;
        let role = tx.role(room_id, caller).await?.ok_or(Error::FailedPrecondition("not a member of this room"))?;
        tx.delete_member(room_id, caller).await?;
        audit(&tx, now, "member.leave", caller, room_id, None, serde_json::json!({})).await?;
        let mut changes = vec![Change::MemberRemoved { user_id: caller.to_owned(), reason: RemovalReason::Left }];
        let successor = if role == Role::Owner { tx.successor(room_id).await? } else { None };
        if let Some(successor) = successor {
            tx.set_owner(room_id, &successor).await?;
            let detail = serde_json::json!({ "reason": "owner_left" });
            audit(&tx, now, "room.transfer_ownership", caller, room_id, Some(&successor), detail).await?;
            changes.push(Change::RoleChanged { user_id: successor, role: Role::Owner });
        }
        let closed = tx.member_count(room_id).await? == 0;
        if closed {
            tx.close(room_id, now).await?;
            let detail = serde_json::json!({ "reason": CloseReason::Empty.as_str() });
            audit(&tx, now, "room.close", caller, room_id, None, detail).await?;
            changes.push(Change::RoomClosed { reason: CloseReason::Empty });
        }
        tx.commit().await?;
        self.publish(room_id, changes);
        if closed {
            tracing::info!(%room_id, "last member left; room closed");
            self.refresh_active_gauge().await;
        }
        Ok(())
    }

    /// The members with their display names, owner first, then moderators, then members, each
    /// by join time. Members only.
    pub async fn members(&self, caller: &UserId, room_id: &RoomId) -> Result<Vec<Member>, Error> {
        let stored = self.store.room(room_id).await?.ok_or(Error::RoomNotFound)?;
        let role = self.store.role(room_id, caller).await?;
        self.authorize(Action::ListMembers, role, stored.room.control_mode)?;
        let rows = self.store.members(room_id).await?;
        let mut names = self.names_of(rows.iter().map(|(user_id, _, _)| user_id.clone()).collect()).await;
        Ok(rows
            .into_iter()
            .map(|(user_id, role, joined_at)| Member {
                display_name: names.remove(&user_id).unwrap_or_default(),
                user_id,
                role,
                joined_at,
            })
            .collect())
    }

    /// The caller's own membership and what the permission matrix lets them do now (nothing
    /// in a closed room).
    ///
    /// # Errors
    /// `RoomNotFound`, `MemberNotFound` when the caller is not a member, `Database`.
    pub async fn membership(&self, caller: &Caller, room_id: &RoomId) -> Result<Membership, Error> {
        let room = self.store.room(room_id).await?.ok_or(Error::RoomNotFound)?.room;
        let (role, joined_at) = self.store.member(room_id, &caller.user_id).await?.ok_or(Error::MemberNotFound)?;
        let may = |action| room.status == RoomStatus::Active && allows(action, Some(role), room.control_mode);
        Ok(Membership {
            member: Member {
                user_id: caller.user_id.to_string(),
                display_name: caller.display_name.clone(),
                role,
                joined_at,
            },
            can_control: may(Action::ControlPlayback),
            can_moderate: may(Action::Moderate),
            can_manage: may(Action::EditSettings),
        })
    }

    /// Changes the room's settings: name and description (owner, moderators), visibility,
    /// password and control mode (owner).
    pub async fn update(&self, caller: &UserId, room_id: &RoomId, request: UpdateRoom) -> Result<Room, Error> {
        let UpdateRoom { name, description, visibility, password, clear_password, control_mode } =
            request.checked().map_err(Error::InvalidArgument)?;
        let edits_settings = visibility.is_some() || password.is_some() || clear_password || control_mode.is_some();
        let required = if edits_settings { Action::EditSettings } else { Action::EditDetails };

        // Refuse before spending a bcrypt hash on someone who may not change the password.
        let stored = active(self.store.room(room_id).await?)?;
        self.authorize(required, self.store.role(room_id, caller).await?, stored.room.control_mode)?;
        let password_hash = match password {
            Some(password) => Some(Some(self.hash_password(password).await?)),
            None if clear_password => Some(None),
            None => None,
        };

        let now = self.clock.now_ms();
        let tx = self.store.write().await?;
        let current = active(tx.room(room_id).await?)?.room;
        self.authorize(required, tx.role(room_id, caller).await?, current.control_mode)?;
        let mut detail = serde_json::Map::new();
        if let Some(name) = name.as_ref().filter(|name| **name != current.name) {
            detail.insert("name".to_owned(), name.clone().into());
        }
        if let Some(description) = description.as_ref().filter(|description| **description != current.description) {
            detail.insert("description".to_owned(), description.clone().into());
        }
        if let Some(visibility) = visibility.filter(|visibility| *visibility != current.visibility) {
            detail.insert("visibility".to_owned(), visibility.as_str().into());
        }
        if let Some(mode) = control_mode.filter(|mode| *mode != current.control_mode) {
            detail.insert("control_mode".to_owned(), mode.as_str().into());
        }
        match &password_hash {
            Some(Some(_)) => detail.insert("password".to_owned(), "set".into()),
            Some(None) if current.has_password => detail.insert("password".to_owned(), "cleared".into()),
            _ => None,
        };
        if detail.is_empty() {
            return Ok(current);
        }
        let changes = RoomChanges { name, description, visibility, control_mode, password_hash };
        tx.update_room(room_id, changes, now).await?;
        audit(&tx, now, "room.update", caller, room_id, None, detail.into()).await?;
        let room = active(tx.room(room_id).await?)?.room;
        tx.commit().await?;
        self.publish(room_id, vec![Change::RoomUpdated { control_mode: room.control_mode }]);
        Ok(room)
    }

    /// Makes a member a moderator or a member again (owner only).
    pub async fn set_role(
        &self,
        caller: &UserId,
        room_id: &RoomId,
        user_id: &UserId,
        role: Role,
    ) -> Result<Member, Error> {
        if role == Role::Owner {
            return Err(Violation::new("role", "must be MEMBER or MODERATOR; use TransferOwnership").into());
        }
        let now = self.clock.now_ms();
        let tx = self.store.write().await?;
        let room = active(tx.room(room_id).await?)?.room;
        self.authorize(Action::SetRole, tx.role(room_id, caller).await?, room.control_mode)?;
        let current = tx.role(room_id, user_id).await?.ok_or(Error::MemberNotFound)?;
        if current == Role::Owner {
            return Err(Error::FailedPrecondition("the owner's role changes only through TransferOwnership"));
        }
        if current != role {
            tx.set_role(room_id, user_id, role).await?;
            tx.touch(room_id, now).await?;
            let detail = serde_json::json!({ "from": current.as_str(), "to": role.as_str() });
            audit(&tx, now, "member.set_role", caller, room_id, Some(user_id), detail).await?;
        }
        let joined_at = tx.joined_at(room_id, user_id).await?.unwrap_or(now);
        tx.commit().await?;
        if current != role {
            self.publish(room_id, vec![Change::RoleChanged { user_id: user_id.clone(), role }]);
        }
        Ok(self.member(user_id, role, joined_at).await)
    }

    /// Removes a member, who may not rejoin until the kick ban runs out. Owners kick
    /// moderators and members, moderators kick members.
    pub async fn kick(&self, caller: &UserId, room_id: &RoomId, user_id: &UserId) -> Result<(), Error> {
        let now = self.clock.now_ms();
        let tx = self.store.write().await?;
        let room = active(tx.room(room_id).await?)?.room;
        let actor = tx.role(room_id, caller).await?;
        // Outsiders learn nothing about who is in the room.
        self.authorize(Action::ListMembers, actor, room.control_mode)?;
        let target = tx.role(room_id, user_id).await?.ok_or(Error::MemberNotFound)?;
        self.authorize(Action::Kick { target }, actor, room.control_mode)?;
        tx.delete_member(room_id, user_id).await?;
        let banned_until = now.saturating_add(self.kick_ban_ms);
        tx.ban(room_id, user_id, banned_until).await?;
        tx.touch(room_id, now).await?;
        let detail = serde_json::json!({ "role": target.as_str(), "banned_until_ms": banned_until });
        audit(&tx, now, "member.kick", caller, room_id, Some(user_id), detail).await?;
        tx.commit().await?;
        tracing::info!(%room_id, %user_id, kicked_by = %caller, "member kicked");
        self.publish(room_id, vec![Change::MemberRemoved { user_id: user_id.clone(), reason: RemovalReason::Kicked }]);
        Ok(())
    }

    /// Hands the room to another member; the old owner stays as a moderator.
    pub async fn transfer(&self, caller: &UserId, room_id: &RoomId, user_id: &UserId) -> Result<Room, Error> {
        let now = self.clock.now_ms();
        let tx = self.store.write().await?;
        let room = active(tx.room(room_id).await?)?.room;
        self.authorize(Action::TransferOwnership, tx.role(room_id, caller).await?, room.control_mode)?;
        if user_id == caller {
            return Err(Error::FailedPrecondition("already the owner"));
        }
        tx.role(room_id, user_id).await?.ok_or(Error::MemberNotFound)?;
        tx.set_role(room_id, caller, Role::Moderator).await?;
        tx.set_owner(room_id, user_id).await?;
        tx.touch(room_id, now).await?;
        audit(&tx, now, "room.transfer_ownership", caller, room_id, Some(user_id), serde_json::json!({})).await?;
        let room = active(tx.room(room_id).await?)?.room;
        tx.commit().await?;
        self.publish(
            room_id,
            vec![
                Change::RoleChanged { user_id: user_id.clone(), role: Role::Owner },
                Change::RoleChanged { user_id: caller.clone(), role: Role::Moderator },
            ],
        );
        Ok(room)
    }

    /// Closes the room for everyone (owner only).
    pub async fn close(&self, caller: &UserId, room_id: &RoomId) -> Result<Room, Error> {
        self.close_by(Some(caller), room_id, CloseReason::ClosedByOwner).await
    }

    /// Closes the room for everyone, whoever owns it: an operator's call, audit-logged with no
    /// acting user.
    pub async fn close_as_admin(&self, room_id: &RoomId) -> Result<Room, Error> {
        self.close_by(None, room_id, CloseReason::ClosedByAdmin).await
    }

    /// Closes an active room; `caller` must be allowed to, unless the operator (`None`) closes it.
    async fn close_by(&self, caller: Option<&UserId>, room_id: &RoomId, reason: CloseReason) -> Result<Room, Error> {
        let now = self.clock.now_ms();
        let tx = self.store.write().await?;
        let room = active(tx.room(room_id).await?)?.room;
        if let Some(caller) = caller {
            self.authorize(Action::Close, tx.role(room_id, caller).await?, room.control_mode)?;
        }
        tx.close(room_id, now).await?;
        tx.audit(AuditRecord {
            at: now,
            action: "room.close",
            user_id: caller.cloned(),
            room_id: room_id.clone(),
            target_user_id: None,
            detail: serde_json::json!({ "reason": reason.as_str() }),
        })
        .await?;
        let room = tx.room(room_id).await?.ok_or(Error::RoomNotFound)?.room;
        tx.commit().await?;
        tracing::info!(%room_id, reason = reason.as_str(), "room closed");
        self.publish(room_id, vec![Change::RoomClosed { reason }]);
        self.refresh_active_gauge().await;
        Ok(room)
    }

    /// What `user_id` may do in the room now.
    pub async fn check_access(&self, room_id: &RoomId, user_id: &UserId) -> Result<Access, Error> {
        let pair = [(room_id.clone(), user_id.clone())];
        self.check_access_many(&pair).await?.pop().flatten().ok_or(Error::RoomNotFound)
    }

    /// [`Self::check_access`] for each pair, in order; `None` where the room is unknown. Two
    /// queries answer any number of pairs, so that a burst of first-time checks from other
    /// services (one per new sender or watcher) costs room-svc one call instead of hundreds.
    pub async fn check_access_many(&self, pairs: &[(RoomId, UserId)]) -> Result<Vec<Option<Access>>, Error> {
        let (rooms, roles) = self.store.access_rows(pairs).await?;
        let answers = pairs.iter().map(|(room_id, user_id)| {
            let &(status, control_mode) = rooms.get(room_id.as_str())?;
            let role = roles.get(&(room_id.to_string(), user_id.to_string())).copied();
            let open = status == RoomStatus::Active;
            Some(Access {
                status,
                control_mode,
                role,
                can_control: open && allows(Action::ControlPlayback, role, control_mode),
                can_moderate: open && allows(Action::Moderate, role, control_mode),
            })
        });
        Ok(answers.collect())
    }

    /// Marks the room active now, postponing the idle close.
    pub async fn record_activity(&self, room_id: &RoomId) -> Result<(), Error> {
        if self.store.touch(room_id, self.clock.now_ms()).await? {
            return Ok(());
        }
        active(self.store.room(room_id).await?).map(|_| ())
    }

    /// Marks the open ones among `room_ids` active now, in one write.
    pub async fn record_activity_many(&self, room_ids: &[RoomId]) -> Result<(), Error> {
        self.store.touch_many(room_ids, self.clock.now_ms()).await?;
        Ok(())
    }

    /// Closes every room idle for longer than the limit, each with its audit row and event;
    /// how many.
    pub async fn close_idle(&self) -> Result<u64, Error> {
        let mut closed = 0;
        loop {
            let now = self.clock.now_ms();
            let cutoff = now.saturating_sub(self.idle_ms);
            let idle = self.store.idle_rooms(cutoff, JANITOR_BATCH).await?;
            let batch = idle.len() as u64;
            for room_id in idle {
                let tx = self.store.write().await?;
                // Activity may have arrived since the rooms were listed.
                let Some(stored) = tx.room(&room_id).await? else { continue };
                let room = stored.room;
                if room.status != RoomStatus::Active || room.last_active_at >= cutoff {
                    continue;
                }
                tx.close(&room_id, now).await?;
                let detail = serde_json::json!({
                    "reason": CloseReason::Idle.as_str(),
                    "last_active_ms": room.last_active_at,
                });
                tx.audit(AuditRecord {
                    at: now,
                    action: "room.close",
                    user_id: None,
                    room_id: room_id.clone(),
                    target_user_id: None,
                    detail,
                })
                .await?;
                tx.commit().await?;
                tracing::info!(%room_id, last_active_ms = room.last_active_at, "idle room closed");
                self.publish(&room_id, vec![Change::RoomClosed { reason: CloseReason::Idle }]);
                closed += 1;
            }
            if batch < JANITOR_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        self.refresh_active_gauge().await;
        Ok(closed)
    }

    /// Runs [`Self::close_idle`] every `interval` until `shutdown`.
    pub async fn run_janitor(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.close_idle().await {
                Ok(0) => {}
                Ok(closed) => tracing::info!(closed, "idle rooms closed"),
                Err(error) => tracing::warn!(%error, "room janitor failed"),
            }
        }
    }

    /// A page of audit rows, oldest (or newest) first, and the next page's token.
    pub async fn audit_logs(&self, query: AuditQuery) -> Result<(Vec<AuditEntry>, Option<String>), Error> {
        let AuditQuery { room_id, user_id, start, end, action, newest_first, page_size: size, page_token } = query;
        let end = end.unwrap_or_else(|| self.clock.now_ms().saturating_add(1));
        let (size, after) = audit_page(size, &page_token, start, end).map_err(Error::InvalidArgument)?;
        let filter = AuditFilter { room_id, user_id, start, end, action, newest_first };
        let rows = self.store.audit_page(filter, after, size + 1).await?;
        Ok(paginate(rows, size, |entry| format!("{}.{}", entry.created_at, entry.audit_log_id)))
    }
}

/// How many audit rows, after which `(created_at, id)` position.
pub(crate) type AuditPage = (u64, Option<(i64, i64)>);

/// An audit page's size and position, or every violation among `size`, `token` and the time
/// range.
pub(crate) fn audit_page(size: i32, token: &str, start: Option<i64>, end: i64) -> Result<AuditPage, Vec<Violation>> {
    let mut violations = Vec::new();
    let size = checked(&mut violations, page_size(size, DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE));
    let after = checked(&mut violations, decode_audit_token(token));
    if start.is_some_and(|start| start > end) {
        violations.push(Violation::new("end_time", "must not be before start_time"));
    }
    match (size, after) {
        (Some(size), Some(after)) if violations.is_empty() => Ok((size, after)),
        _ => Err(violations),
    }
}

pub(crate) fn room_page(page_size_value: i32, page_token: &str) -> Result<(u64, Option<(i64, String)>), Error> {
    let mut violations = Vec::new();
    let size = checked(&mut violations, page_size(page_size_value, DEFAULT_ROOM_PAGE, MAX_ROOM_PAGE));
    let after = checked(&mut violations, decode_room_token(page_token));
    match (size, after) {
        (Some(size), Some(after)) => Ok((size, after)),
        _ => Err(Error::InvalidArgument(violations)),
    }
}

fn room_token(room: &Room) -> String {
    format!("{}.{}", room.last_active_at, room.room_id)
}

/// A room id and a user id from a request, or the violations of both.
pub(crate) fn room_and_user(room_id: &str, user_id: &str) -> Result<(RoomId, UserId), Error> {
    let mut violations = Vec::new();
    let room_id = checked(&mut violations, RoomId::parse("room_id", room_id));
    let user_id = checked(&mut violations, UserId::parse("user_id", user_id));
    match (room_id, user_id) {
        (Some(room_id), Some(user_id)) => Ok((room_id, user_id)),
        _ => Err(Error::InvalidArgument(violations)),
    }
}

async fn audit(
    tx: &Tx,
    at: i64,
    action: &'static str,
    user_id: &UserId,
    room_id: &RoomId,
    target_user_id: Option<&UserId>,
    detail: serde_json::Value,
) -> Result<(), Error> {
    tx.audit(AuditRecord {
        at,
        action,
        user_id: Some(user_id.clone()),
        room_id: room_id.clone(),
        target_user_id: target_user_id.cloned(),
        detail,
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_measured_in_bytes() {
        assert!(password_violation("password", "12345678").is_none());
        assert!(password_violation("password", &"a".repeat(72)).is_none());
        assert!(password_violation("password", &"a".repeat(73)).is_some());
        assert!(password_violation("password", "1234567").is_some());
        // 24 three-byte characters are 72 bytes; one more is 75 even though it is 25 characters.
        assert!(password_violation("password", &"密".repeat(24)).is_none());
        assert!(password_violation("password", &"密".repeat(25)).is_some());
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let room_id = uuid::Uuid::new_v4().to_string();
        assert_eq!(decode_room_token(&format!("42.{room_id}")), Ok(Some((42, room_id))));
        assert_eq!(decode_room_token(""), Ok(None));
        assert!(decode_room_token("42").is_err());
        assert!(decode_room_token("x.y").is_err());
        assert_eq!(decode_audit_token("5.7"), Ok(Some((5, 7))));
        assert!(decode_audit_token("5.x").is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0, 20, 100), Ok(20));
        assert_eq!(page_size(100, 20, 100), Ok(100));
        assert!(page_size(101, 20, 100).is_err());
        assert!(page_size(-1, 20, 100).is_err());
    }
}
