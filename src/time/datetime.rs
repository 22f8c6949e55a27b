//! ISO-8601 times as producers write them, and XML Schema dateTimes as
//! credentials carry them, to the millisecond, without a calendar crate:
//! the proleptic Gregorian day count of Howard Hinnant's `days_from_civil`.

/// Longest time text read: a full ISO-8601 time with nanoseconds and an
/// offset is 35 bytes; anything longer is not one.
pub const MAX_TIME_LEN: usize = 40;

/// Milliseconds of one day.
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a civil date (any year, proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day count.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an ISO-8601 date and time to unix milliseconds: `YYYY-MM-DD`,
/// `T` (or a space), `HH:MM:SS`, optional fraction (digits beyond the
/// millisecond are dropped), optional offset `Z`, `±HH:MM`, `±HHMM` or
/// `±HH`. Without an offset the time is UTC (what existing producers mean
/// by a naive time). The error says what is wrong, for a person.
pub fn parse_iso8601(text: &str) -> Result<i64, &'static str> {
    const SHAPE: &str =
        "must be an ISO-8601 date and time, e.g. 2025-10-03T18:15:10Z (no offset means UTC)";
    if text.len() > MAX_TIME_LEN || !text.is_ascii() {
        return Err(SHAPE);
    }
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Result<u32, &'static str> {
        let part = b.get(from..from + len).ok_or(SHAPE)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(SHAPE);
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return Err(SHAPE);
    }
    let (year, month, day) = (i64::from(num(0, 4)?), num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err("has no such date");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("has no such time of day");
    }
    let mut i = 19;
    let mut ms = 0;
    if at(i, b".,") {
        let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return Err(SHAPE);
        }
        for (k, d) in b[i + 1..i + 1 + digits.min(3)].iter().enumerate() {
            ms += u32::from(d - b'0') * [100, 10, 1][k];
        }
        i += 1 + digits;
    }
    let offset_minutes: i64 = match &b[i..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest.len() {
                2 => (num(i + 1, 2)?, 0),
                4 => (num(i + 1, 2)?, num(i + 3, 2)?),
                5 if rest[2] == b':' => (num(i + 1, 2)?, num(i + 4, 2)?),
                _ => return Err(SHAPE),
            };
            if h > 14 || m > 59 {
                return Err("has an offset beyond ±14:00");
            }
            let minutes = i64::from(h * 60 + m);
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return Err(SHAPE),
    };
    let days = days_from_civil(year, month, day);
    let seconds = i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    Ok(days * DAY_MS + seconds * 1000 + i64::from(ms))
}

/// Unix milliseconds as an XML Schema dateTime in UTC, as credentials write
/// times: `2025-10-03T18:15:10Z`, with `.123` when there are milliseconds.
pub fn format_xsd(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days);
    let (seconds, millis) = (in_day / 1000, in_day % 1000);
    let time = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if millis == 0 {
        format!("{time}Z")
    } else {
        format!("{time}.{millis:03}Z")
    }
}

/// Parses the XML Schema dateTimes this module writes (and any ISO-8601
/// time [`parse_iso8601`] reads).
pub fn parse_xsd(text: &str) -> Option<i64> {
    parse_iso8601(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // date -u -d 2025-10-03T18:15:10 +%s
        assert_eq!(parse_iso8601("2025-10-03T18:15:10"), Ok(1_759_515_310_000));
        assert_eq!(parse_iso8601("2025-10-03T18:15:10Z"), Ok(1_759_515_310_000));
        assert_eq!(parse_iso8601("2025-10-03 18:15:10"), Ok(1_759_515_310_000));
        assert_eq!(
            parse_iso8601("2025-10-03T20:15:10.5+02:00"),
            Ok(1_759_515_310_500)
        );
        assert_eq!(
            parse_iso8601("2025-10-03T13:15:10.123456-0500"),
            Ok(1_759_515_310_123)
        );
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_iso8601("1969-12-31T23:59:59.999Z"), Ok(-1));
        // A leap day, and the day after a century that is not leap.
        assert_eq!(parse_iso8601("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(parse_iso8601("2100-03-01T00:00:00Z"), Ok(4_107_542_400_000));
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in [
            "",
            "2025-10-03",
            "2025-10-03T18:15",
            "2025-13-03T18:15:10",
            "2025-02-29T00:00:00",
            "2025-10-32T00:00:00",
            "2025-10-03T24:00:00",
            "2025-10-03T18:60:10",
            "2025-10-03T18:15:10.",
            "2025-10-03T18:15:10+15:00",
            "2025-10-03T18:15:10+2",
            "2025-10-03T18:15:10ZZ",
            "2025/10/03T18:15:10",
            "２025-10-03T18:15:10",
            "1759515310",
            "2025-10-03T18:15:10.1234567890",
        ] {
            assert!(parse_iso8601(bad).is_err(), "{bad:?}");
        }
        assert!(parse_iso8601(&"2".repeat(100)).is_err());
    }

    #[test]
    fn formats_round_trip() {
        for ms in [
            0,
            -1,
            1_759_515_310_000,
            1_759_515_310_123,
            1_709_164_800_000,
            253_402_300_799_999,
        ] {
            let text = format_xsd(ms);
            assert_eq!(parse_iso8601(&text), Ok(ms), "{text}");
            // The Data Integrity code takes it as a proof's `created`.
            let options = crate::crypto::data_integrity::ProofOptions {
                verification_method: "did:key:z6Mk#z6Mk".into(),
                proof_purpose: "assertionMethod".into(),
                created: Some(text.clone()),
            };
            let key = crate::crypto::ed25519::SigningKey::from_seed(&[1; 32]).expect("key");
            assert!(
                crate::crypto::data_integrity::create_proof(&serde_json::json!({}), &key, &options)
                    .is_ok(),
                "{text}"
            );
        }
        assert_eq!(format_xsd(1_759_515_310_000), "2025-10-03T18:15:10Z");
        assert_eq!(format_xsd(1_759_515_310_050), "2025-10-03T18:15:10.050Z");
    }
}
