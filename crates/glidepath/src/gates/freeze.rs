//! `[[gates.freeze]]`: refuse to start inside a freeze window, one-off
//! (`from`/`to`, RFC 3339) or recurring (`weekdays`, `start`/`end` in a
//! time zone).

use super::{tables, Context, GateResult, Reading, Verdict};
use toml_span::value::Table;

#[derive(Debug, Clone, PartialEq)]
pub enum Freeze {
    Absolute {
        name: String,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    },
    Recurring {
        name: String,
        weekdays: Vec<jiff::civil::Weekday>,
        start: jiff::civil::Time,
        end: jiff::civil::Time,
        tz: String,
    },
}

/// Read `[[gates.freeze]]` (each entry a window).
pub(super) fn read(r: &mut dyn Reading, t: &Table<'_>) -> Vec<Freeze> {
    let mut windows = Vec::new();
    for (ft, item_span) in tables(r, t, "freeze", "name = \"holiday freeze\"") {
        r.known_keys(
            ft,
            "[[gates.freeze]]",
            &["name", "from", "to", "weekdays", "start", "end", "timezone"],
        );
        let name = r
            .req_str(
                ft,
                item_span,
                "[[gates.freeze]]",
                "name",
                "\"holiday freeze\"",
            )
            .map_or_else(|| "freeze".into(), |x| x.0);
        if ft.contains_key("from") || ft.contains_key("to") {
            let ts = |r: &mut dyn Reading, key: &str| {
                let (s, sp) = r.req_str(
                    ft,
                    item_span,
                    "[[gates.freeze]]",
                    key,
                    "\"2026-12-20T00:00:00+01:00\"",
                )?;
                match s.parse::<jiff::Timestamp>() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        r.err(
                            sp,
                            format!("`{key}` is not an RFC 3339 time: {e}"),
                            "not a timestamp",
                            Some("e.g. \"2026-12-20T00:00:00+01:00\" (with an offset)".into()),
                        );
                        None
                    }
                }
            };
            if let (Some(from), Some(to)) = (ts(r, "from"), ts(r, "to")) {
                if to <= from {
                    r.err(
                        item_span,
                        format!("freeze `{name}` ends before it starts"),
                        "to ≤ from",
                        None,
                    );
                }
                windows.push(Freeze::Absolute { name, from, to });
            }
        } else {
            let days = r
                .str_list(ft, "weekdays", "[\"fri\", \"sat\", \"sun\"]")
                .unwrap_or_default();
            let mut weekdays = Vec::new();
            for (d, s) in days {
                match weekday(&d) {
                    Some(w) => weekdays.push(w),
                    None => r.err(s, format!("unknown weekday `{d}`"), "mon…sun", None),
                }
            }
            let time = |r: &mut dyn Reading, key: &str, ex: &str| {
                let (s, sp) = r.req_str(ft, item_span, "[[gates.freeze]]", key, ex)?;
                let s2 = if s == "24:00" {
                    "23:59:59.999999999".to_string()
                } else {
                    s.clone()
                };
                match s2.parse::<jiff::civil::Time>() {
                    Ok(t) => Some(t),
                    Err(_) => {
                        r.err(
                            sp,
                            format!("`{key}` = \"{s}\" is not a time of day"),
                            "HH:MM",
                            None,
                        );
                        None
                    }
                }
            };
            let start = time(r, "start", "\"15:00\"");
            let end = time(r, "end", "\"24:00\"");
            let tz = r.req_str(
                ft,
                item_span,
                "[[gates.freeze]]",
                "timezone",
                "\"Europe/Paris\"",
            );
            if let Some((z, s)) = &tz {
                if jiff::tz::TimeZone::get(z).is_err() {
                    r.err(
                        *s,
                        format!("unknown time zone `{z}`"),
                        "not in the tz database",
                        Some("an IANA name such as \"Europe/Paris\" or \"UTC\"".into()),
                    );
                }
            }
            if weekdays.is_empty() {
                r.err(
                    item_span,
                    format!("freeze `{name}` has no weekdays"),
                    "when does it recur?",
                    Some("weekdays = [\"fri\"], or from/to for a one-off window".into()),
                );
            }
            if let (Some(start), Some(end), Some((tz, _))) = (start, end, tz) {
                windows.push(Freeze::Recurring {
                    name,
                    weekdays,
                    start,
                    end,
                    tz,
                });
            }
        }
    }
    windows
}

/// The freeze gate: fails inside a window.
pub(super) async fn check(windows: &[Freeze], cx: &Context<'_>) -> Vec<GateResult> {
    if windows.is_empty() {
        return vec![];
    }
    vec![match frozen(windows, cx.now) {
        Some(w) => GateResult::new(
            "freeze",
            Verdict::Fail,
            format!("inside freeze window {w}"),
            Some(
                "wait for the window to end, or --force freeze --reason \"…\" for an emergency fix",
            ),
        ),
        None => GateResult::new(
            "freeze",
            Verdict::Pass,
            format!("outside all {} freeze window(s)", windows.len()),
            None,
        ),
    }]
}

/// Is `now` inside a freeze window? Returns the window's description.
pub fn frozen(freezes: &[Freeze], now: jiff::Timestamp) -> Option<String> {
    for f in freezes {
        match f {
            Freeze::Absolute { name, from, to } => {
                if *from <= now && now < *to {
                    return Some(format!("`{name}` from {from} to {to}"));
                }
            }
            Freeze::Recurring {
                name,
                weekdays,
                start,
                end,
                tz,
            } => {
                let Ok(zone) = jiff::tz::TimeZone::get(tz) else {
                    continue;
                };
                let local = now.to_zoned(zone);
                let t = local.time();
                // `end` before `start` runs overnight: from `start` on a listed
                // day to `end` the next morning
                let overnight = end < start;
                let in_force = if overnight {
                    (weekdays.contains(&local.weekday()) && *start <= t)
                        || (weekdays.contains(&local.weekday().previous()) && t < *end)
                } else {
                    weekdays.contains(&local.weekday()) && *start <= t && t < *end
                };
                if in_force {
                    return Some(format!(
                        "`{name}` ({:?} {start}–{end} {tz}; it is {} there)",
                        local.weekday(),
                        local.strftime("%a %H:%M")
                    ));
                }
            }
        }
    }
    None
}

fn weekday(s: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday::*;
    Some(match s.to_ascii_lowercase().get(..3)? {
        "mon" => Monday,
        "tue" => Tuesday,
        "wed" => Wednesday,
        "thu" => Thursday,
        "fri" => Friday,
        "sat" => Saturday,
        "sun" => Sunday,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn absolute_window_edges() {
        let f = vec![Freeze::Absolute {
            name: "holidays".into(),
            from: at("2026-12-20T00:00:00+01:00"),
            to: at("2027-01-04T00:00:00+01:00"),
        }];
        assert!(
            frozen(&f, at("2026-12-19T22:59:59Z")).is_none(),
            "a second before the start (23:59:59 +01:00)"
        );
        assert!(
            frozen(&f, at("2026-12-19T23:00:00Z")).is_some(),
            "the start is inside"
        );
        assert!(frozen(&f, at("2027-01-03T22:59:59Z")).is_some());
        assert!(
            frozen(&f, at("2027-01-03T23:00:00Z")).is_none(),
            "the end is outside"
        );
    }

    #[test]
    fn recurring_window_in_its_time_zone_across_dst() {
        let f = vec![Freeze::Recurring {
            name: "friday afternoon".into(),
            weekdays: vec![jiff::civil::Weekday::Friday],
            start: "15:00".parse().unwrap(),
            end: "23:59:59.999999999".parse().unwrap(),
            tz: "Europe/Paris".into(),
        }];
        // winter, Paris = UTC+1: Friday 2026-11-27
        assert!(frozen(&f, at("2026-11-27T13:59:59Z")).is_none());
        let w = frozen(&f, at("2026-11-27T14:00:00Z")).unwrap();
        assert!(w.contains("Fri 15:00"), "{w}");
        assert!(
            frozen(&f, at("2026-11-27T22:59:59Z")).is_some(),
            "Friday 23:59:59 in Paris"
        );
        assert!(
            frozen(&f, at("2026-11-27T23:00:00Z")).is_none(),
            "Saturday 00:00 in Paris"
        );
        // summer, Paris = UTC+2: Friday 2026-07-03
        assert!(frozen(&f, at("2026-07-03T12:59:59Z")).is_none());
        assert!(frozen(&f, at("2026-07-03T13:00:00Z")).is_some());
        // a Friday in UTC that is already Saturday in Tokyo does not freeze a Tokyo window for Fridays
        let tokyo = vec![Freeze::Recurring {
            name: "t".into(),
            weekdays: vec![jiff::civil::Weekday::Friday],
            start: "00:00".parse().unwrap(),
            end: "23:59:59".parse().unwrap(),
            tz: "Asia/Tokyo".into(),
        }];
        assert!(
            frozen(&tokyo, at("2026-11-27T16:00:00Z")).is_none(),
            "Saturday 01:00 in Tokyo"
        );
        assert!(
            frozen(&tokyo, at("2026-11-27T14:00:00Z")).is_some(),
            "Friday 23:00 in Tokyo"
        );
    }

    /// `start = "21:00"`, `end = "01:00"` on Sundays: Sunday night into
    /// Monday morning (it used to be never in force).
    #[test]
    fn an_overnight_window_spans_midnight() {
        let f = vec![Freeze::Recurring {
            name: "night".into(),
            weekdays: vec![jiff::civil::Weekday::Sunday],
            start: "21:00".parse().unwrap(),
            end: "01:00".parse().unwrap(),
            tz: "UTC".into(),
        }];
        // 2026-11-22 is a Sunday
        assert!(frozen(&f, at("2026-11-22T20:59:59Z")).is_none());
        assert!(frozen(&f, at("2026-11-22T21:52:00Z")).is_some());
        assert!(
            frozen(&f, at("2026-11-23T00:30:00Z")).is_some(),
            "Monday 00:30"
        );
        assert!(frozen(&f, at("2026-11-23T01:00:00Z")).is_none());
        assert!(
            frozen(&f, at("2026-11-21T23:00:00Z")).is_none(),
            "Saturday night"
        );
    }
}
