//! Threshold rules: the TOML file operators write, its validation at start-up (every problem
//! names the rule and the field), and the comparison itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The rules used when no rules file is configured.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// The series every target gets, whatever it exports.
pub const BUILTIN_METRICS: [&str; 9] = [
    "up",
    "requests_per_second",
    "error_ratio",
    "refused_per_second",
    "latency_p50_seconds",
    "latency_p95_seconds",
    "latency_p99_seconds",
    "open_calls",
    "resident_memory_bytes",
];

/// The suffix of a configured counter's per-second rate series.
pub const RATE_SUFFIX: &str = ":rate";

/// How a rule compares the metric's value with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            ">" => Self::Greater,
            ">=" => Self::GreaterOrEqual,
            "<" => Self::Less,
            "<=" => Self::LessOrEqual,
            "==" => Self::Equal,
            "!=" => Self::NotEqual,
            _ => return None,
        })
    }

    /// Whether `value` meets the condition.
    #[must_use]
    #[allow(clippy::float_cmp)]
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Greater => value > threshold,
            Self::GreaterOrEqual => value >= threshold,
            Self::Less => value < threshold,
            Self::LessOrEqual => value <= threshold,
            Self::Equal => value == threshold,
            Self::NotEqual => value != threshold,
        }
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The name used in the rules file, the database and notifications.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// The inverse of [`Severity::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "info" => Some(Self::Info),
            "warning" => Some(Self::Warning),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// A validated threshold rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub metric: String,
    /// The one target the rule watches; every target when `None`.
    pub service: Option<String>,
    pub comparison: Comparison,
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    pub for_duration: Duration,
    pub severity: Severity,
    pub message: String,
}

impl Rule {
    /// Whether the rule watches `service`.
    #[must_use]
    pub fn applies_to(&self, service: &str) -> bool {
        self.service.as_deref().is_none_or(|only| only == service)
    }
}

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("cannot read rules file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Not TOML, or not the expected shape (unknown or missing keys, wrong types).
    #[error("rules file is not valid: {message}")]
    Syntax { message: String },
    /// One rule's field is wrong.
    #[error("rule {rule:?}, field `{field}`: {problem}")]
    Invalid { rule: String, field: &'static str, problem: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    metric: String,
    #[serde(default)]
    service: Option<String>,
    comparison: String,
    threshold: f64,
    #[serde(default, rename = "for")]
    for_duration: Option<String>,
    severity: String,
    message: String,
}

/// What rules may refer to: the metrics that will exist and the targets that are scraped.
#[derive(Debug, Clone)]
pub struct RuleContext {
    pub metrics: HashSet<String>,
    pub services: HashSet<String>,
}

impl RuleContext {
    /// The built-in series, a rate for every counter, every gauge, and the target names.
    #[must_use]
    pub fn new(counters: &[String], gauges: &[String], services: impl IntoIterator<Item = String>) -> Self {
        let metrics = BUILTIN_METRICS
            .iter()
            .map(|name| (*name).to_owned())
            .chain(counters.iter().map(|counter| format!("{counter}{RATE_SUFFIX}")))
            .chain(gauges.iter().cloned())
            .collect();
        Self { metrics, services: services.into_iter().collect() }
    }
}

/// Reads and validates the rules file at `path`, or the defaults when `path` is `None`.
///
/// # Errors
/// See [`RulesError`].
pub fn load(path: Option<&Path>, context: &RuleContext) -> Result<Vec<Rule>, RulesError> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| RulesError::Read { path: path.to_path_buf(), source })?;
            parse(&text, context)
        }
        None => parse(DEFAULT_RULES, context),
    }
}

/// Parses and validates rules from TOML text.
///
/// # Errors
/// See [`RulesError`].
pub fn parse(text: &str, context: &RuleContext) -> Result<Vec<Rule>, RulesError> {
    let file: RulesFile = toml::from_str(text).map_err(|error| RulesError::Syntax { message: error.to_string() })?;
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(file.rules.len());
    for (index, raw) in file.rules.into_iter().enumerate() {
        let rule = validate(raw, index, context)?;
        if !names.insert(rule.name.clone()) {
            return Err(invalid(&rule.name, "name", "another rule has the same name"));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn invalid(rule: &str, field: &'static str, problem: impl Into<String>) -> RulesError {
    RulesError::Invalid { rule: rule.to_owned(), field, problem: problem.into() }
}

fn validate(raw: RawRule, index: usize, context: &RuleContext) -> Result<Rule, RulesError> {
    let RawRule { name, metric, service, comparison, threshold, for_duration, severity, message } = raw;
    let name = name.trim().to_owned();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(invalid(&format!("#{}", index + 1), "name", "use letters, digits, '_' or '-'"));
    }
    if !context.metrics.contains(&metric) {
        let mut known: Vec<_> = context.metrics.iter().map(String::as_str).collect();
        known.sort_unstable();
        return Err(invalid(&name, "metric", format!("unknown metric {metric:?}; known: {}", known.join(", "))));
    }
    let service = service.filter(|service| !service.is_empty());
    if let Some(service) = &service
        && !context.services.contains(service)
    {
        return Err(invalid(&name, "service", format!("{service:?} is not a scrape target")));
    }
    let comparison = Comparison::parse(comparison.trim())
        .ok_or_else(|| invalid(&name, "comparison", format!("{comparison:?}: use >, >=, <, <=, == or !=")))?;
    if !threshold.is_finite() {
        return Err(invalid(&name, "threshold", "must be a finite number"));
    }
    let for_duration = match for_duration {
        Some(text) => svc_kit::server::parse_duration(&text).map_err(|problem| invalid(&name, "for", problem))?,
        None => Duration::ZERO,
    };
    let severity = Severity::parse(severity.trim())
        .ok_or_else(|| invalid(&name, "severity", format!("{severity:?}: use info, warning or critical")))?;
    if message.trim().is_empty() {
        return Err(invalid(&name, "message", "must not be empty"));
    }
    Ok(Rule { name, metric, service, comparison, threshold, for_duration, severity, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> RuleContext {
        RuleContext::new(
            &["xiaowo_auth_failures_total".to_owned()],
            &["xiaowo_rooms_active".to_owned()],
            ["session".to_owned()],
        )
    }

    const GOOD: &str = r#"
[[rules]]
name = "AuthBurst"
metric = "xiaowo_auth_failures_total:rate"
service = "session"
comparison = ">="
threshold = 2.5
for = "1m"
severity = "critical"
message = "burst"
"#;

    fn field_of(text: &str) -> &'static str {
        match parse(text, &context()) {
            Err(RulesError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_file_parses_into_rules() {
        let rules = parse(GOOD, &context()).unwrap();
        assert_eq!(rules.len(), 1);
        let rule = &rules[0];
        assert_eq!(rule.metric, "xiaowo_auth_failures_total:rate");
        assert_eq!(rule.service.as_deref(), Some("session"));
        assert_eq!(rule.comparison, Comparison::GreaterOrEqual);
        assert_eq!(rule.for_duration, Duration::from_secs(60));
        assert_eq!(rule.severity, Severity::Critical);
        assert!(rule.applies_to("session") && !rule.applies_to("room"));
    }

    #[test]
    fn each_wrong_field_is_named() {
        assert_eq!(field_of(&GOOD.replace("xiaowo_auth_failures_total:rate", "no_such_metric")), "metric");
        assert_eq!(field_of(&GOOD.replace("\">=\"", "\"=>\"")), "comparison");
        assert_eq!(field_of(&GOOD.replace("\"1m\"", "\"a minute\"")), "for");
        assert_eq!(field_of(&GOOD.replace("\"critical\"", "\"loud\"")), "severity");
        assert_eq!(field_of(&GOOD.replace("service = \"session\"", "service = \"nowhere\"")), "service");
        assert_eq!(field_of(&GOOD.replace("\"burst\"", "\"  \"")), "message");
        assert_eq!(field_of(&GOOD.replace("\"AuthBurst\"", "\"has space\"")), "name");
        assert_eq!(field_of(&format!("{GOOD}{GOOD}")), "name");
    }

    #[test]
    fn malformed_toml_and_unknown_keys_are_syntax_errors() {
        assert!(matches!(parse("[[rules]\nname=", &context()), Err(RulesError::Syntax { .. })));
        assert!(matches!(
            parse(&GOOD.replace("message = \"burst\"", "message = \"burst\"\nthreshhold = 3"), &context()),
            Err(RulesError::Syntax { .. })
        ));
        assert!(matches!(parse(&GOOD.replace("threshold = 2.5\n", ""), &context()), Err(RulesError::Syntax { .. })));
    }

    #[test]
    fn default_rules_are_valid_with_the_default_metrics() {
        let config: crate::Config = svc_kit::testing::from_env();
        let context = RuleContext::new(&config.counters, &config.gauges, Vec::new());
        let rules = load(None, &context).unwrap();
        let names: Vec<_> = rules.iter().map(|rule| rule.name.as_str()).collect();
        for expected in
            ["TargetDown", "AuthFailureBurst", "PermissionDeniedBurst", "WrongPasswordBurst", "FloodLimitBurst"]
        {
            assert!(names.contains(&expected), "{expected} missing");
        }
    }

    #[test]
    fn comparisons() {
        assert!(Comparison::Greater.holds(2.0, 1.0) && !Comparison::Greater.holds(1.0, 1.0));
        assert!(Comparison::GreaterOrEqual.holds(1.0, 1.0));
        assert!(Comparison::Less.holds(0.0, 1.0) && !Comparison::Less.holds(1.0, 1.0));
        assert!(Comparison::LessOrEqual.holds(1.0, 1.0));
        assert!(Comparison::Equal.holds(1.0, 1.0) && Comparison::NotEqual.holds(0.0, 1.0));
    }
}
