//! Subtitle tracks of library items: uploaded (SRT, WebVTT, ASS/SSA in any of the encodings
//! `decode` recognises) or extracted from the text subtitle streams of a probed file, always
//! stored as WebVTT made by `cue::render_file` (only the kept cue tags, everything else
//! escaped), each with a language tag and a label. Served as `GET /media/<item>/subtitles/
//! <track>.vtt` under the rule of `GET /media/<item>`: a URL signed for the caller, handed out
//! only to members of a room whose timeline or queue holds the item. A room's owner may name
//! the track the room starts with for an item.
//!
//! Who may add and delete an item's tracks: the person who uploaded the item, an operator
//! (MediaAdminService), and the owner or a moderator of a room whose timeline or queue holds
//! the item (asked with that room): a room that watches a film from the shared folder can give
//! it subtitles. Everyone who may see the item sees its tracks.
//!
//! The WebVTT is kept in the database beside the track's row (a few hundred kilobytes at most):
//! a track and its text come and go in one statement, backups carry uploaded subtitles, which
//! nothing could make again, and a deleted item takes its tracks with it (foreign key).

pub mod ass;
pub mod convert;
pub mod cue;
pub mod decode;
mod extract;
pub mod srt;
pub mod vtt;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use svc_kit::auth::Caller;
use svc_kit::id::RoomId;
use svc_kit::peer::room::RoomRole;
use svc_kit::status::Violation;
use svc_kit::text::TextRule;

use crate::Error;
use crate::http::{HttpState, error_response};
use crate::library::{Library, check_id};
use crate::model::{MediaItem, Source, Viewer};
pub use convert::{Converted, Format, Limits, Refusal};

/// Labels: what people type, bounded; empty means "name it by its language".
pub const LABEL: TextRule = TextRule { field: "label", min_chars: 0, max_chars: 100, allow_newline: false };
/// Tracks one item may have.
pub const MAX_TRACKS_PER_ITEM: u64 = 50;
/// The longest language tag accepted (BCP 47 allows long ones; real ones are short).
const MAX_LANGUAGE_CHARS: usize = 35;
/// Subtags a language tag may have (`zh-Hant-TW` has three).
const MAX_SUBTAGS: usize = 6;

/// Where a track came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackSource {
    /// A person added it.
    Upload,
    /// Extracted from a subtitle stream of the item's file.
    Embedded,
}

/// A subtitle track (its WebVTT is fetched on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtitleTrack {
    pub track_id: String,
    pub media_item_id: String,
    /// A BCP 47 tag (`zh`, `zh-Hant`, `en-US`; `und` when unknown).
    pub language: String,
    /// What people named it; may be empty (then the language names it).
    pub label: String,
    pub source: TrackSource,
    /// The format it came in (`srt`, `vtt`, `ass`, `ssa`), and for embedded streams the codec.
    pub original_format: String,
    /// The encoding it came in (WHATWG name).
    pub encoding: String,
    pub cue_count: i32,
    /// The stream of the file it was extracted from; -1 for uploads.
    pub stream_index: i32,
    /// Empty for embedded tracks.
    pub added_by_user_id: String,
    pub created_at: i64,
}

/// An item's tracks as one caller sees them.
#[derive(Debug, Clone)]
pub struct TrackListing {
    /// Each track with its signed URL (empty unless asked from a room that plays the item).
    pub tracks: Vec<(SubtitleTrack, String)>,
    /// The room's default track for the item; empty for none (subtitles off).
    pub room_default_track_id: String,
    pub can_edit: bool,
    pub can_set_room_default: bool,
}

/// A track added, with what the conversion had to do.
#[derive(Debug, Clone)]
pub struct AddedTrack {
    pub track: SubtitleTrack,
    pub repaired: usize,
    pub skipped: usize,
}

/// What a new track declares.
#[derive(Debug, Clone)]
pub struct NewTrack {
    pub media_item_id: String,
    pub language: String,
    pub label: String,
    pub content: Vec<u8>,
}

/// Who asks: a person (with their session token, for sync-svc, and the room they ask from) or
/// an operator.
#[derive(Debug, Clone, Copy)]
pub enum Asker<'a> {
    Person { caller: &'a Caller, token: &'a str, room_id: Option<&'a RoomId> },
    Admin,
}

/// What the asker may do with one item's subtitles.
struct Access {
    item: MediaItem,
    /// A member asking from a room whose timeline or queue holds the item.
    room_plays: bool,
    room_owner: bool,
    can_edit: bool,
}

/// ISO 639-2 codes (as Matroska and MP4 tag streams) that BCP 47 writes with two letters, and
/// the bibliographic variants it does not accept.
const ISO_639_2: &[(&str, &str)] = &[
    ("chi", "zh"),
    ("zho", "zh"),
    ("eng", "en"),
    ("jpn", "ja"),
    ("kor", "ko"),
    ("fre", "fr"),
    ("fra", "fr"),
    ("ger", "de"),
    ("deu", "de"),
    ("spa", "es"),
    ("ita", "it"),
    ("por", "pt"),
    ("rus", "ru"),
    ("ara", "ar"),
    ("hin", "hi"),
    ("tha", "th"),
    ("vie", "vi"),
    ("ind", "id"),
    ("may", "ms"),
    ("msa", "ms"),
    ("dut", "nl"),
    ("nld", "nl"),
    ("pol", "pl"),
    ("tur", "tr"),
    ("swe", "sv"),
    ("nor", "no"),
    ("dan", "da"),
    ("fin", "fi"),
    ("cze", "cs"),
    ("ces", "cs"),
    ("gre", "el"),
    ("ell", "el"),
    ("heb", "he"),
    ("hun", "hu"),
    ("ukr", "uk"),
    ("rum", "ro"),
    ("ron", "ro"),
];

/// `text` as a BCP 47 language tag in its usual case (`zh-hant-tw` → `zh-Hant-TW`, `chi` →
/// `zh`, `en_US` → `en-US`), or `None` when it is not one: a primary language of 2–3 letters
/// (or `und`), then up to five subtags of 1–8 letters and digits.
#[must_use]
pub fn language_tag(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_LANGUAGE_CHARS {
        return None;
    }
    let mut subtags = text.split(['-', '_']);
    let primary = subtags.next()?.to_ascii_lowercase();
    if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let primary =
        ISO_639_2.iter().find(|(code, _)| *code == primary).map_or(primary.clone(), |(_, tag)| (*tag).to_owned());
    let mut out = vec![primary];
    for subtag in subtags {
        if subtag.is_empty() || subtag.len() > 8 || !subtag.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let alphabetic = subtag.bytes().all(|b| b.is_ascii_alphabetic());
        out.push(match subtag.len() {
            4 if alphabetic => {
                let lower = subtag.to_ascii_lowercase();
                lower[..1].to_ascii_uppercase() + &lower[1..]
            }
            2 if alphabetic => subtag.to_ascii_uppercase(),
            _ => subtag.to_ascii_lowercase(),
        });
    }
    (out.len() <= MAX_SUBTAGS).then(|| out.join("-"))
}

/// The violation a refused file gets (on `content`), in words the client recognises.
fn refusal_violation(refusal: Refusal) -> Violation {
    let description = match refusal {
        Refusal::Empty => "must not be empty".to_owned(),
        Refusal::TooLarge { max_bytes } => format!("must be at most {max_bytes} bytes"),
        Refusal::Binary => "is binary data, not a text subtitle file".to_owned(),
        Refusal::UnknownFormat => "is not SRT, WebVTT, ASS or SSA subtitles".to_owned(),
        Refusal::TooManyCues { max_cues } => format!("must have at most {max_cues} cues"),
        Refusal::NoValidCues { skipped } => format!("has no valid cues ({skipped} with bad timestamps or no text)"),
    };
    Violation::new("content", description)
}

/// The path and query that serve `track_id` of `media_item_id` to `user_id` until `expires`.
fn signed_track_url(library: &Library, media_item_id: &str, track_id: &str, expires: i64, user_id: &str) -> String {
    let signature = library.signer.sign(media_item_id, expires, user_id);
    format!("/media/{media_item_id}/subtitles/{track_id}.vtt?expires={expires}&user={user_id}&signature={signature}")
}

impl Library {
    /// What `asker` may do with the item's subtitles; `NotFound` when they may not see it.
    async fn subtitle_access(&self, asker: Asker<'_>, media_item_id: &str) -> Result<Access, Error> {
        check_id("media_item_id", media_item_id)?;
        let item = self.store.find_item(media_item_id).await?.ok_or(Error::NotFound)?;
        let Asker::Person { caller, token, room_id } = asker else {
            return Ok(Access { item, room_plays: false, room_owner: false, can_edit: true });
        };
        let (mut room_plays, mut room_owner, mut moderates) = (false, false, false);
        if let Some(room_id) = room_id {
            let access = self.access.check(room_id, &caller.user_id).await?;
            if !access.is_member() {
                return Err(Error::NotMember);
            }
            room_plays = self.queue.holds(room_id, media_item_id, token).await?;
            room_owner = room_plays && access.active && access.role == RoomRole::Owner;
            moderates = room_plays && access.can_moderate;
        }
        let viewer = Viewer::Person { user_id: caller.user_id.clone(), member_of: room_id.cloned() };
        if !room_plays && !Self::may_see(&viewer, &item) {
            return Err(Error::NotFound);
        }
        let uploader = item.source == Source::Upload && item.added_by_user_id == caller.user_id.as_str();
        Ok(Access { item, room_plays, room_owner, can_edit: uploader || moderates })
    }

    /// The item's tracks, signed for the caller when asked from a room that plays the item.
    ///
    /// # Errors
    /// `NotFound`, `NotMember`, peer and database failures.
    pub async fn list_subtitles(&self, asker: Asker<'_>, media_item_id: &str) -> Result<TrackListing, Error> {
        let access = self.subtitle_access(asker, media_item_id).await?;
        let tracks = self.store.list_tracks(media_item_id).await?;
        let (room_default_track_id, signer) = match asker {
            Asker::Person { caller, room_id: Some(room_id), .. } if access.room_plays => {
                let default = self.store.room_default(room_id.as_str(), media_item_id).await?.unwrap_or_default();
                let expires =
                    self.now_ms().saturating_add(svc_kit::clock::millis(self.limits.url_ttl)).div_euclid(1000);
                (default, Some((caller.user_id.as_str(), expires)))
            }
            _ => (String::new(), None),
        };
        let tracks = tracks
            .into_iter()
            .map(|track| {
                let url = signer.map_or_else(String::new, |(user_id, expires)| {
                    signed_track_url(self, media_item_id, &track.track_id, expires, user_id)
                });
                (track, url)
            })
            .collect();
        Ok(TrackListing {
            tracks,
            room_default_track_id,
            can_edit: access.can_edit,
            can_set_room_default: access.room_owner,
        })
    }

    /// Converts and stores an uploaded track.
    ///
    /// # Errors
    /// Invalid fields or a refused file (`InvalidArgument`), `NotFound`, `NotMember`,
    /// `SubtitleForbidden`, `TooManyTracks`, peer and database failures.
    pub async fn add_subtitles(&self, asker: Asker<'_>, new: NewTrack) -> Result<AddedTrack, Error> {
        let NewTrack { media_item_id, language, label, content } = new;
        let mut violations = Vec::new();
        if check_id("media_item_id", &media_item_id).is_err() {
            violations.push(Violation::new("media_item_id", "must be a media item id"));
        }
        let language = language_tag(&language);
        if language.is_none() {
            violations.push(Violation::new("language", "must be a language tag such as zh, zh-Hant or en-US"));
        }
        let label = LABEL.check(&label).map_err(|violation| violations.push(violation)).ok();
        let (Some(language), Some(label)) = (language, label) else {
            return Err(Error::InvalidArgument(violations));
        };
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let access = self.subtitle_access(asker, &media_item_id).await?;
        if !access.can_edit {
            return Err(Error::SubtitleForbidden);
        }
        let limits = self.limits.subtitles;
        let converted = tokio::task::spawn_blocking(move || convert::convert(&content, limits))
            .await
            .map_err(|error| Error::Io(std::io::Error::other(error)))?
            .map_err(refusal_violation)?;
        let added_by_user_id = match asker {
            Asker::Person { caller, .. } => caller.user_id.to_string(),
            Asker::Admin => String::new(),
        };
        let track = self
            .store_track(&access.item, language, label, TrackSource::Upload, -1, added_by_user_id, &converted)
            .await?;
        tracing::info!(
            media_item_id = %track.media_item_id,
            track_id = %track.track_id,
            format = converted.format.name(),
            encoding = converted.encoding,
            cues = converted.cue_count,
            repaired = converted.repaired,
            skipped = converted.skipped,
            "subtitle track added"
        );
        Ok(AddedTrack { track, repaired: converted.repaired, skipped: converted.skipped })
    }

    #[allow(clippy::too_many_arguments, reason = "one row's columns")]
    async fn store_track(
        &self,
        item: &MediaItem,
        language: String,
        label: String,
        source: TrackSource,
        stream_index: i32,
        added_by_user_id: String,
        converted: &Converted,
    ) -> Result<SubtitleTrack, Error> {
        let track = SubtitleTrack {
            track_id: uuid::Uuid::new_v4().to_string(),
            media_item_id: item.media_item_id.clone(),
            language,
            label,
            source,
            original_format: converted.format.name().to_owned(),
            encoding: converted.encoding.to_owned(),
            cue_count: i32::try_from(converted.cue_count).unwrap_or(i32::MAX),
            stream_index,
            added_by_user_id,
            created_at: self.now_ms(),
        };
        if !self.store.insert_track_within(&track, &converted.vtt, MAX_TRACKS_PER_ITEM).await? {
            return Err(Error::TooManyTracks { max: MAX_TRACKS_PER_ITEM });
        }
        Ok(track)
    }

    /// Deletes a track.
    ///
    /// # Errors
    /// `NotFound`, `NotMember`, `SubtitleForbidden`, peer and database failures.
    pub async fn delete_subtitles(&self, asker: Asker<'_>, track_id: &str) -> Result<(), Error> {
        check_id("track_id", track_id).map_err(|_| Violation::new("track_id", "must be a subtitle track id"))?;
        let track = self.store.find_track(track_id).await?.ok_or(Error::NotFound)?;
        let access = self.subtitle_access(asker, &track.media_item_id).await?;
        if !access.can_edit {
            return Err(Error::SubtitleForbidden);
        }
        if !self.store.delete_track(track_id).await? {
            return Err(Error::NotFound);
        }
        tracing::info!(%track_id, media_item_id = %track.media_item_id, "subtitle track deleted");
        Ok(())
    }

    /// Sets (or, with an empty `track_id`, clears) the track a room starts the item with.
    ///
    /// # Errors
    /// Invalid ids, `NotMember`, `NotInRoom`, `NotRoomOwner`, `NotFound`, peer and database
    /// failures.
    pub async fn set_room_subtitle_default(
        &self,
        caller: &Caller,
        token: &str,
        room_id: &RoomId,
        media_item_id: &str,
        track_id: &str,
    ) -> Result<String, Error> {
        if !track_id.is_empty() {
            check_id("track_id", track_id).map_err(|_| Violation::new("track_id", "must be a subtitle track id"))?;
        }
        let access =
            self.subtitle_access(Asker::Person { caller, token, room_id: Some(room_id) }, media_item_id).await?;
        if !access.room_plays {
            return Err(Error::NotInRoom);
        }
        if !access.room_owner {
            return Err(Error::NotRoomOwner);
        }
        let track_id = if track_id.is_empty() {
            None
        } else {
            let track = self.store.find_track(track_id).await?.filter(|track| track.media_item_id == media_item_id);
            Some(track.ok_or(Error::NotFound)?.track_id)
        };
        self.store
            .set_room_default(
                room_id.as_str(),
                media_item_id,
                track_id.as_deref(),
                caller.user_id.as_str(),
                self.now_ms(),
            )
            .await?;
        tracing::info!(%room_id, %media_item_id, track_id = track_id.as_deref().unwrap_or(""), "room subtitle default set");
        Ok(track_id.unwrap_or_default())
    }

    /// Replaces the item's embedded tracks with the text subtitle streams of its file. Failures
    /// are logged: an item without them still plays.
    pub(crate) async fn extract_subtitles(&self, media_item_id: &str, path: &std::path::Path) {
        if let Err(error) = self.extract_checked(media_item_id, path).await {
            tracing::warn!(%media_item_id, %error, "extracting subtitles failed");
        }
    }

    async fn extract_checked(&self, media_item_id: &str, path: &std::path::Path) -> Result<(), Error> {
        let streams = extract::subtitle_streams(&self.prober, path).await?;
        let removed = self.store.delete_embedded_tracks(media_item_id).await?;
        if streams.is_empty() {
            return Ok(());
        }
        let Some(item) = self.store.find_item(media_item_id).await? else { return Ok(()) };
        let mut extracted = 0_u64;
        for stream in &streams {
            let Some(kind) = extract::text_kind(&stream.codec) else {
                tracing::info!(
                    %media_item_id,
                    stream = stream.index,
                    codec = %stream.codec,
                    "subtitle stream skipped: bitmap subtitles (PGS, DVD, DVB) cannot become WebVTT"
                );
                continue;
            };
            let bytes = match extract::extract(&self.prober, path, stream.index, kind).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::info!(%media_item_id, stream = stream.index, %error, "subtitle stream not extracted");
                    continue;
                }
            };
            let limits = self.limits.subtitles;
            let converted = match tokio::task::spawn_blocking(move || convert::convert(&bytes, limits)).await {
                Ok(Ok(converted)) => converted,
                Ok(Err(refusal)) => {
                    tracing::info!(%media_item_id, stream = stream.index, ?refusal, "subtitle stream refused");
                    continue;
                }
                Err(error) => return Err(Error::Io(std::io::Error::other(error))),
            };
            let language = language_tag(&stream.language).unwrap_or_else(|| "und".to_owned());
            let label: String = stream.title.chars().filter(|c| !c.is_control()).take(LABEL.max_chars).collect();
            let index = i32::try_from(stream.index).unwrap_or(i32::MAX);
            match self
                .store_track(
                    &item,
                    language,
                    label.trim().to_owned(),
                    TrackSource::Embedded,
                    index,
                    String::new(),
                    &converted,
                )
                .await
            {
                Ok(_) => extracted += 1,
                Err(Error::TooManyTracks { .. }) => break,
                Err(error) => return Err(error),
            }
        }
        tracing::info!(%media_item_id, streams = streams.len(), extracted, replaced = removed, "embedded subtitles extracted");
        Ok(())
    }
}

/// `GET /media/<item>/subtitles/<track>.vtt`: the track's WebVTT, to the user a URL was signed
/// for (the check of `GET /media/<item>`).
pub(crate) async fn serve_track(
    State(state): State<Arc<HttpState>>,
    Path((media_item_id, file)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (query, headers) = (request.uri().query().map(str::to_owned), request.headers().clone());
    let result = async {
        state.authorize_signed(&media_item_id, query.as_deref(), &headers).await?;
        let track_id = file.strip_suffix(".vtt").ok_or(Error::NotFound)?;
        check_id("track_id", track_id).map_err(|_| Error::NotFound)?;
        state
            .library
            .store
            .track_vtt(&media_item_id, track_id)
            .await?
            .ok_or(Error::NotFound)
            .map(|vtt| (track_id.to_owned(), vtt))
    }
    .await;
    let response = match result {
        Ok((track_id, vtt)) => {
            // A track's text never changes (a new file is a new track): its id is its version.
            let etag = format!("\"{track_id}\"");
            let matches = headers.get(header::IF_NONE_MATCH).is_some_and(|value| value.as_bytes() == etag.as_bytes());
            let mut response = if matches { StatusCode::NOT_MODIFIED.into_response() } else { vtt.into_response() };
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/vtt; charset=utf-8"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=600"));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            if let Ok(etag) = HeaderValue::from_str(&etag) {
                headers.insert(header::ETAG, etag);
            }
            response
        }
        Err(error) => error_response(error, false),
    };
    state.library.metrics.http_requests.with_label_values(&["subtitles", response.status().as_str()]).inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags() {
        assert_eq!(language_tag("zh").as_deref(), Some("zh"));
        assert_eq!(language_tag(" zh-hant-tw ").as_deref(), Some("zh-Hant-TW"));
        assert_eq!(language_tag("en_us").as_deref(), Some("en-US"));
        assert_eq!(language_tag("chi").as_deref(), Some("zh"));
        assert_eq!(language_tag("yue").as_deref(), Some("yue"));
        assert_eq!(language_tag("es-419").as_deref(), Some("es-419"));
        assert_eq!(language_tag("und").as_deref(), Some("und"));
        for bad in ["", "z", "chinese", "zh--CN", "zh-<b>", "1a", "zh-toolongsubtag", "中文", "a-b-c-d-e-f-g"] {
            assert_eq!(language_tag(bad), None, "{bad:?}");
        }
    }
}
