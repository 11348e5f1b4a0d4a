//! Pure ledger types and rules. Nothing here performs I/O.
//!
//! Every rule of the contract about a single value lives in exactly one
//! constructor below, so a value of one of these types is valid by
//! construction (docs/contract.md §1–§2).

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;

/// Which rule of a request a value breaks: one per field of a posting
/// (docs/contract.md §2.1), the `Idempotency-Key` header (§2.6), and the
/// shape of the body as a whole. Each is its own problem type for clients
/// (docs/contract.md §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldRule {
    /// The body is not one JSON object with each field at most once.
    Body,
    /// `valor`: an integer from 1 to 2^63 − 1.
    Amount,
    /// `tipo`: `"c"` or `"d"`.
    Kind,
    /// `descricao`: 1 to 10 characters, no NUL.
    Description,
    /// The `Idempotency-Key` header.
    IdempotencyKey,
    /// A query parameter of the history (docs/contract.md §2.8): 400.
    Query,
}

/// A rule broken by a request field. The message is safe to show to clients
/// and names only wire names (`valor`, `tipo`, …), never internal types.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct InvalidField {
    /// The rule broken.
    pub rule: FieldRule,
    /// What is wrong, for people.
    pub message: String,
}

impl InvalidField {
    /// An [`InvalidField`] breaking `rule`, explained by `message`.
    pub fn new(rule: FieldRule, message: impl Into<String>) -> InvalidField {
        InvalidField {
            rule,
            message: message.into(),
        }
    }
}

fn invalid(rule: FieldRule, message: impl Into<String>) -> InvalidField {
    InvalidField::new(rule, message)
}

/// Identifier of an account (`cliente` on the wire).
///
/// A positive 32-bit integer: the type of the `accounts.id` column. Ids
/// outside that range cannot name an account, so they are "not found"
/// rather than "invalid" (docs/contract.md §2: unknown accounts are 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(i32);

impl AccountId {
    /// Parses a path segment. Only ASCII digits are accepted (no sign, no
    /// spaces); `None` when the text is not a positive integer that fits `i32`.
    pub fn parse(text: &str) -> Option<AccountId> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match text.parse::<i32>() {
            Ok(id) if id > 0 => Some(AccountId(id)),
            _ => None,
        }
    }

    /// Builds an id from an integer; `None` unless it is positive.
    pub fn new(id: i32) -> Option<AccountId> {
        (id > 0).then_some(AccountId(id))
    }

    /// The id as stored in the database.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The ids of the accounts every ledger is seeded with, and `crebito
/// reset` seeds again (docs/contract.md §2.3; the seed migration,
/// `migrations/0002_seed.sql`, is the only copy of their limits).
pub const SEEDED_ACCOUNTS: std::ops::RangeInclusive<i32> = 1..=5;

/// A transaction amount (`valor`), in cents: an integer in `1..=i64::MAX`.
///
/// docs/contract.md §2: `valor` is a JSON integer greater than zero. Amounts are
/// 64-bit signed cents end to end, so values above 2^31 are legal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    /// Accepts any positive `i64`; zero and negatives are refused.
    pub fn new(cents: i64) -> Result<Amount, InvalidField> {
        if cents > 0 {
            Ok(Amount(cents))
        } else {
            Err(invalid(
                FieldRule::Amount,
                "valor must be an integer greater than zero",
            ))
        }
    }

    /// The amount in cents.
    pub fn cents(self) -> i64 {
        self.0
    }
}

/// Whether a transaction adds to (`c`) or subtracts from (`d`) the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `tipo: "c"`: adds the amount to the balance.
    Credit,
    /// `tipo: "d"`: subtracts the amount; refused when the balance would go
    /// below `-limit` (docs/contract.md §2).
    Debit,
}

impl Kind {
    /// Parses the wire code: exactly `"c"` or `"d"`, lower case (docs/contract.md §2).
    pub fn parse(code: &str) -> Result<Kind, InvalidField> {
        match code {
            "c" => Ok(Kind::Credit),
            "d" => Ok(Kind::Debit),
            _ => Err(invalid(
                FieldRule::Kind,
                r#"tipo must be "c" (credit) or "d" (debit)"#,
            )),
        }
    }

    /// The wire code, `"c"` or `"d"`.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Credit => "c",
            Kind::Debit => "d",
        }
    }
}

/// A transaction description (`descricao`): 1 to 10 Unicode scalar values,
/// no NUL character.
///
/// docs/contract.md §2 counts characters, not bytes (`"débito"` is 6). NUL is refused
/// because PostgreSQL text cannot store it, and both ledgers must accept the
/// same inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Maximum length in characters (docs/contract.md §2).
    pub const MAX_CHARS: usize = 10;

    /// Validates the length (1..=10 chars) and refuses NUL.
    pub fn new(text: impl Into<String>) -> Result<Description, InvalidField> {
        let text = text.into();
        let chars = text.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(invalid(
                FieldRule::Description,
                "descricao must be 1 to 10 characters long",
            ));
        }
        if text.contains('\0') {
            return Err(invalid(
                FieldRule::Description,
                "descricao must not contain a NUL character",
            ));
        }
        Ok(Description(text))
    }

    /// The text, unchanged.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-chosen key that makes a posting safe to retry (the
/// `Idempotency-Key` request header): 1 to 64 visible ASCII characters
/// (`!` to `~`). Keys are scoped to one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Maximum length in characters.
    pub const MAX_LEN: usize = 64;

    /// Validates length and characters.
    pub fn new(text: &str) -> Result<IdempotencyKey, InvalidField> {
        if (1..=Self::MAX_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(IdempotencyKey(text.to_owned()))
        } else {
            Err(invalid(
                FieldRule::IdempotencyKey,
                "Idempotency-Key must be 1 to 64 visible ASCII characters",
            ))
        }
    }

    /// Parses the value of an `Idempotency-Key` header (docs/contract.md
    /// §2.6). The IETF httpapi draft defines the field as a Structured Field
    /// Item whose value is a String (RFC 8941 §3.3.3): `"8e03978e-40d5"`,
    /// quoted, the canonical form; its parameters, if any, are ignored (RFC
    /// 8941 §3.1.2: unknown parameters are ignored). A value that does not
    /// start with `"` is the bare form: the key as written. Both name the
    /// same key: `"abc"` and `abc` are one key. Either way the key is 1 to 64
    /// visible ASCII characters ([`IdempotencyKey::new`]).
    ///
    /// Errors: [`FieldRule::IdempotencyKey`] when a quoted value is not a
    /// valid sf-string Item (unterminated, bad escape, trailing text), or
    /// the key breaks [`IdempotencyKey::new`].
    pub fn from_header(value: &[u8]) -> Result<IdempotencyKey, InvalidField> {
        if value.first() != Some(&b'"') {
            let text = std::str::from_utf8(value).unwrap_or("\u{0}");
            return IdempotencyKey::new(text);
        }
        let item: sfv::Item = sfv::Parser::new(value)
            .with_version(sfv::Version::Rfc8941)
            .parse()
            .map_err(|e| {
                invalid(
                    FieldRule::IdempotencyKey,
                    format!("Idempotency-Key is not a valid quoted string (RFC 8941): {e}"),
                )
            })?;
        match item.bare_item.as_string() {
            Some(key) => IdempotencyKey::new(key.as_str()),
            None => Err(invalid(
                FieldRule::IdempotencyKey,
                "Idempotency-Key must be a string",
            )),
        }
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated request to post one transaction to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Amount in cents.
    pub amount: Amount,
    /// Credit or debit.
    pub kind: Kind,
    /// Description as given by the client.
    pub description: Description,
}

impl Transaction {
    /// A stable text that identifies the request's content, stored with an
    /// idempotency key so that a reuse of the key for a different request
    /// can be refused: `"<amount>:<c|d>:<description>"`.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}:{}:{}",
            self.amount.cents(),
            self.kind.code(),
            self.description.as_str()
        )
    }

    /// The signed change to the balance, in cents: `+amount` for a credit,
    /// `-amount` for a debit. Never overflows, since `amount > 0`.
    pub fn delta(&self) -> i64 {
        match self.kind {
            Kind::Credit => self.amount.cents(),
            Kind::Debit => -self.amount.cents(),
        }
    }
}

/// Why a posting is refused. Nothing is recorded for any of them; each is
/// answered 422 (docs/contract.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PostingError {
    /// The debit would leave the balance below `-limit` (docs/contract.md §3).
    #[error("debit would exceed the account's limit")]
    LimitExceeded,
    /// A credit would take the balance past `i64::MAX` cents (a debit is
    /// only ever [`PostingError::LimitExceeded`]; docs/contract.md §2.4).
    #[error("the new balance would overflow")]
    Overflow,
    /// The `Idempotency-Key` was first used on this account for a different
    /// request (docs/contract.md §2.6).
    #[error("Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
}

/// The posting rule (docs/contract.md §3): the new balance, in cents, after applying
/// `delta` to `balance` on an account whose overdraft limit is `limit`.
///
/// A balance of exactly `-limit` is allowed; one cent less is refused with
/// [`PostingError::LimitExceeded`]. A credit that would take the balance
/// past `i64::MAX` is refused with [`PostingError::Overflow`]; a debit can
/// only ever be refused for the limit: one that would take the balance
/// below `i64::MIN` takes it far below `-limit` (`limit >= 0`), so it is
/// [`PostingError::LimitExceeded`] too (docs/contract.md §2.4).
pub fn apply(balance: i64, limit: i64, delta: i64) -> Result<i64, PostingError> {
    match balance.checked_add(delta) {
        Some(new_balance) if new_balance < -limit => Err(PostingError::LimitExceeded),
        Some(new_balance) => Ok(new_balance),
        None if delta < 0 => Err(PostingError::LimitExceeded),
        None => Err(PostingError::Overflow),
    }
}

/// The result of a successful posting: the account's state right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// Balance in cents, `>= -limit`.
    pub balance: i64,
    /// Overdraft limit in cents, `>= 0`.
    pub limit: i64,
}

/// One posted transaction as shown in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedTransaction {
    /// Amount in cents, `> 0`.
    pub amount: i64,
    /// Credit or debit.
    pub kind: Kind,
    /// Description exactly as posted.
    pub description: String,
    /// When the posting was committed (database clock for PostgreSQL).
    pub posted_at: DateTime<Utc>,
}

/// A consistent snapshot of one account (docs/contract.md §2 "extrato", §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Whole current balance in cents (not a sum of the listed rows).
    pub balance: i64,
    /// Overdraft limit in cents.
    pub limit: i64,
    /// When the snapshot was taken.
    pub generated_at: DateTime<Utc>,
    /// At most [`Statement::MAX_TRANSACTIONS`] rows, newest first, in posting order.
    pub transactions: Vec<PostedTransaction>,
}

impl Statement {
    /// How many of the latest transactions a statement lists (docs/contract.md §2).
    pub const MAX_TRANSACTIONS: usize = 10;
}

/// A page of an account's history (docs/contract.md §2.8): a consistent
/// snapshot of the balance and of up to [`PageSize`] transactions older
/// than a cursor, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Whole current balance in cents.
    pub balance: i64,
    /// Overdraft limit in cents.
    pub limit: i64,
    /// When the snapshot was taken.
    pub generated_at: DateTime<Utc>,
    /// The page's transactions with their posting ids, newest first.
    pub transactions: Vec<(PostingId, PostedTransaction)>,
    /// True when older transactions exist past the last one listed.
    pub more: bool,
}

/// The id of a posted transaction: a positive integer that grows in
/// posting order (the `transactions.id` column); the history's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PostingId(i64);

impl PostingId {
    /// Parses a query value: ASCII digits only, `1..=i64::MAX`.
    pub fn parse(text: &str) -> Result<PostingId, InvalidField> {
        let invalid = || {
            invalid(
                FieldRule::Query,
                "antes_de must be a posting id: an integer from 1 to 9223372036854775807",
            )
        };
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        match text.parse::<i64>() {
            Ok(id) if id > 0 => Ok(PostingId(id)),
            _ => Err(invalid()),
        }
    }

    /// An id as stored; `None` unless positive.
    pub fn new(id: i64) -> Option<PostingId> {
        (id > 0).then_some(PostingId(id))
    }

    /// The id as stored.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// How many transactions one history page lists: `1..=`[`PageSize::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u16);

impl PageSize {
    /// The largest page (docs/contract.md §2.8).
    pub const MAX: u16 = 100;
    /// The page size when none is asked for.
    pub const DEFAULT: PageSize = PageSize(20);

    /// Parses a query value: ASCII digits only, `1..=100`.
    pub fn parse(text: &str) -> Result<PageSize, InvalidField> {
        let invalid = || invalid(FieldRule::Query, "tamanho must be an integer from 1 to 100");
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        match text.parse::<u16>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(PageSize(n)),
            _ => Err(invalid()),
        }
    }

    /// The size.
    pub fn get(self) -> usize {
        self.0.into()
    }
}

/// Formats a timestamp as RFC 3339 in UTC with a `Z` and microseconds,
/// e.g. `2024-01-17T02:34:41.217753Z` (docs/contract.md §2).
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_accepts_positive_i32_only() {
        assert_eq!(AccountId::parse("1").map(AccountId::get), Some(1));
        assert_eq!(
            AccountId::parse("2147483647").map(AccountId::get),
            Some(i32::MAX)
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            " 1",
            "1 ",
            "2147483648",
            "1.0",
            "abc",
            "１",
        ] {
            assert_eq!(AccountId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(AccountId::new(0), None);
        assert_eq!(AccountId::new(5).map(AccountId::get), Some(5));
    }

    #[test]
    fn amount_must_be_positive() {
        assert!(Amount::new(0).is_err());
        assert!(Amount::new(-5).is_err());
        assert!(Amount::new(i64::MIN).is_err());
        assert_eq!(Amount::new(1).unwrap().cents(), 1);
        assert_eq!(Amount::new(i64::MAX).unwrap().cents(), i64::MAX);
        assert_eq!(Amount::new(1 << 40).unwrap().cents(), 1 << 40);
    }

    #[test]
    fn kind_is_exactly_c_or_d() {
        assert_eq!(Kind::parse("c"), Ok(Kind::Credit));
        assert_eq!(Kind::parse("d"), Ok(Kind::Debit));
        for bad in ["C", "D", "x", "", "cd", " c", "credit"] {
            assert!(Kind::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Kind::Credit.code(), "c");
        assert_eq!(Kind::Debit.code(), "d");
    }

    #[test]
    fn description_counts_characters_not_bytes() {
        assert!(Description::new("").is_err());
        assert!(Description::new("a").is_ok());
        assert!(Description::new("0123456789").is_ok());
        assert!(Description::new("01234567890").is_err());
        assert!(Description::new("123456789 e mais um pouco").is_err());
        // 6 characters, 7 bytes.
        assert_eq!(Description::new("débito").unwrap().as_str(), "débito");
        // 10 characters of 4 bytes each (40 bytes).
        assert!(Description::new("😀".repeat(10)).is_ok());
        assert!(Description::new("😀".repeat(11)).is_err());
        assert!(Description::new("a\0b").is_err());
    }

    #[test]
    fn idempotency_key_is_1_to_64_visible_ascii() {
        assert!(IdempotencyKey::new("a").is_ok());
        assert!(IdempotencyKey::new(&"k".repeat(64)).is_ok());
        assert!(IdempotencyKey::new("550e8400-e29b-41d4-a716-446655440000").is_ok());
        assert!(IdempotencyKey::new("!~").is_ok());
        for bad in ["", " ", "a b", "é", "tab\t", "\u{7f}"] {
            assert!(IdempotencyKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::new(&"k".repeat(65)).is_err());
    }

    #[test]
    fn idempotency_key_header_is_an_sf_string_or_bare() {
        let key = |v: &str| IdempotencyKey::from_header(v.as_bytes()).map(|k| k.0);
        // The canonical quoted form and the bare form name the same key.
        assert_eq!(key(r#""abc-1""#), Ok("abc-1".into()));
        assert_eq!(key("abc-1"), Ok("abc-1".into()));
        // Escapes and parameters (ignored).
        assert_eq!(key(r#""a\"b\\c""#), Ok(r#"a"b\c"#.into()));
        assert_eq!(key(r#""abc";v=1"#), Ok("abc".into()));
        let uuid = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(key(&format!("\"{uuid}\"")), Ok(uuid.into()));
        for bad in [
            r#"""#,
            r#""""#,
            r#""abc"#,
            r#""abc" x"#,
            r#""a\b""#,
            r#""a b""#,
            "\"é\"",
        ] {
            let error = key(bad).unwrap_err();
            assert_eq!(error.rule, FieldRule::IdempotencyKey, "{bad:?}");
        }
        let long = "k".repeat(65);
        assert!(key(&format!("\"{long}\"")).is_err());
        assert!(IdempotencyKey::from_header(b"\xff").is_err());
    }

    #[test]
    fn fingerprint_distinguishes_requests() {
        let t = |amount, kind, text: &str| Transaction {
            amount: Amount::new(amount).unwrap(),
            kind,
            description: Description::new(text).unwrap(),
        };
        assert_eq!(t(5, Kind::Credit, "a").fingerprint(), "5:c:a");
        assert_ne!(
            t(5, Kind::Credit, "a").fingerprint(),
            t(5, Kind::Debit, "a").fingerprint()
        );
        assert_ne!(
            t(5, Kind::Credit, "a").fingerprint(),
            t(5, Kind::Credit, "b").fingerprint()
        );
        assert_ne!(
            t(5, Kind::Credit, "a").fingerprint(),
            t(6, Kind::Credit, "a").fingerprint()
        );
    }

    #[test]
    fn delta_sign_follows_kind() {
        let t = |kind| Transaction {
            amount: Amount::new(7).unwrap(),
            kind,
            description: Description::new("x").unwrap(),
        };
        assert_eq!(t(Kind::Credit).delta(), 7);
        assert_eq!(t(Kind::Debit).delta(), -7);
        let max = Transaction {
            amount: Amount::new(i64::MAX).unwrap(),
            kind: Kind::Debit,
            description: Description::new("x").unwrap(),
        };
        assert_eq!(max.delta(), -i64::MAX);
    }

    #[test]
    fn apply_allows_exactly_minus_limit() {
        assert_eq!(apply(0, 1000, -1000), Ok(-1000));
        assert_eq!(apply(0, 1000, -1001), Err(PostingError::LimitExceeded));
        assert_eq!(apply(-1000, 1000, 1), Ok(-999));
        assert_eq!(apply(0, 0, -1), Err(PostingError::LimitExceeded));
        assert_eq!(apply(5, 0, -5), Ok(0));
    }

    #[test]
    fn apply_refuses_overflow() {
        assert_eq!(apply(i64::MAX, 0, 1), Err(PostingError::Overflow));
        assert_eq!(apply(i64::MAX - 1, 0, 1), Ok(i64::MAX));
        assert_eq!(apply(-1, 0, -i64::MAX), Err(PostingError::LimitExceeded));
    }

    #[test]
    fn a_debit_is_only_ever_refused_for_the_limit() {
        // Below i64::MIN is below any -limit: the limit, not an overflow.
        assert_eq!(apply(-2, 0, -i64::MAX), Err(PostingError::LimitExceeded));
        assert_eq!(
            apply(-2, 100_000, -i64::MAX),
            Err(PostingError::LimitExceeded)
        );
        assert_eq!(
            apply(i64::MIN + 1, i64::MAX, -2),
            Err(PostingError::LimitExceeded)
        );
        assert_eq!(
            apply(-i64::MAX, i64::MAX, -1),
            Err(PostingError::LimitExceeded)
        );
        assert_eq!(apply(0, i64::MAX, -i64::MAX), Ok(-i64::MAX));
    }

    #[test]
    fn history_cursor_and_page_size_bounds() {
        assert_eq!(PostingId::parse("1").map(PostingId::get), Ok(1));
        assert_eq!(
            PostingId::parse("9223372036854775807").map(PostingId::get),
            Ok(i64::MAX)
        );
        for bad in ["", "0", "-1", "+1", " 1", "1.0", "9223372036854775808", "x"] {
            assert!(PostingId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(PageSize::parse("1").map(PageSize::get), Ok(1));
        assert_eq!(PageSize::parse("100").map(PageSize::get), Ok(100));
        for bad in ["", "0", "101", "-1", "1e2", "65537"] {
            assert!(PageSize::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(PageSize::DEFAULT.get(), 20);
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let at = DateTime::parse_from_rfc3339("2024-01-17T02:34:41.217753123+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(at), "2024-01-17T02:34:41.217753Z");
        let whole = DateTime::parse_from_rfc3339("2024-01-17T02:34:41Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(whole), "2024-01-17T02:34:41.000000Z");
    }
}
