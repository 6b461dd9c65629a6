use super::*;

const T0: i64 = 1_765_137_600_000; // 2025-12-07T20:00:00Z
const TWO_S: u64 = 180_000;

fn record(msn: u64) -> SegmentRecord {
    SegmentRecord {
        msn,
        duration_90k: TWO_S,
        program_date_time_ms: T0 + msn as i64 * 2000,
        bytes: 500_000 + msn,
        iframe_bytes: None,
        init_version: 0,
        discontinuity: false,
        gap: false,
    }
}

fn chunk_of_records(number: u64, records: impl IntoIterator<Item = SegmentRecord>) -> IndexChunk {
    let mut chunk = IndexChunk::new(number);
    for r in records {
        assert_eq!(chunk.insert(r).unwrap(), Insert::Added);
    }
    chunk
}

#[test]
fn a_chunk_round_trips_and_reads_as_json_lines() {
    let mut chunk = chunk_of_records(1, [record(300), record(256), record(257)]);
    chunk.insert(record(301).into_gap()).unwrap();
    let bytes = chunk.encode();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with(
        "{\"format\":\"floodlight-archive-index-chunk\",\"version\":1,\"chunk\":1}\n{\"msn\":256,"
    ));
    assert_eq!(text.lines().count(), 5);
    let decoded = IndexChunk::decode("k", 1, &bytes).unwrap();
    assert_eq!(decoded, chunk);
    let msns: Vec<u64> = decoded.records().iter().map(|r| r.msn).collect();
    assert_eq!(msns, [256, 257, 300, 301]);
    assert!(decoded.records()[3].gap);
}

#[test]
fn a_head_round_trips_and_lists_each_chunk_from_its_lowest_msn() {
    let mut head = IndexHead::default();
    assert!(head.note(&record(300)));
    assert!(!head.note(&record(301)));
    assert!(head.note(&record(256)), "a lower MSN of a listed chunk");
    assert!(head.note(&record(5)));
    let bytes = head.encode();
    let decoded = IndexHead::decode("head", &bytes).unwrap();
    assert_eq!(decoded, head);
    let starts: Vec<(u64, u64)> = decoded.chunks().map(|c| (c.chunk, c.first_msn)).collect();
    assert_eq!(starts, [(0, 5), (1, 256)]);
}

#[test]
fn corrupt_chunks_are_errors_that_name_object_and_line() {
    let good = chunk_of_records(0, [record(0), record(1)]).encode();
    let object = "v1/events/e/renditions/r/index/0.jsonl";
    let text = String::from_utf8(good.clone()).unwrap();
    let cases: Vec<(Vec<u8>, usize, &str)> = vec![
        (Vec::new(), 0, "truncated"),
        (good[..good.len() - 1].to_vec(), 3, "truncated"),
        (good[..good.len() - 10].to_vec(), 3, "truncated"),
        (
            text.replace("\"msn\":1,", "\"msn\":\"one\",").into_bytes(),
            3,
            "invalid type",
        ),
        (
            text.replace("\"msn\":1,", "").into_bytes(),
            3,
            "missing field `msn`",
        ),
        (
            text.replace("\"msn\":1,", "\"msn\":0,").into_bytes(),
            3,
            "must increase",
        ),
        (
            text.replace("\"msn\":1,", "\"msn\":900,").into_bytes(),
            3,
            "does not belong",
        ),
        (
            text.replace("\"chunk\":0", "\"chunk\":4").into_bytes(),
            1,
            "the key says 0",
        ),
        (
            text.replace("index-chunk", "index-head").into_bytes(),
            1,
            "format",
        ),
        (
            text.replace("\n{\"msn\":1", "\n\n{\"msn\":1").into_bytes(),
            3,
            "empty line",
        ),
        (
            text.replacen("\"bytes\":500001", "\"bytes\":0", 1)
                .into_bytes(),
            3,
            "has bytes",
        ),
        (
            [&good[..good.len() - 3], &[0xff, b'}', b'\n'][..]].concat(),
            3,
            "not UTF-8 at byte offset",
        ),
    ];
    for (bytes, line, wanted) in cases {
        let err = IndexChunk::decode(object, 0, &bytes).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with(object), "{message}");
        assert!(message.contains(wanted), "{wanted:?} not in {message}");
        if line > 0 {
            assert!(message.contains(&format!("line {line}:")), "{message}");
        }
    }
    let newer = text.replace("\"version\":1", "\"version\":2");
    assert_eq!(
        IndexChunk::decode(object, 0, newer.as_bytes()).unwrap_err(),
        IndexError::UnsupportedVersion {
            object: object.into(),
            found: 2
        }
    );
    let huge = vec![b'x'; MAX_CHUNK_BYTES + 1];
    assert!(matches!(
        IndexChunk::decode(object, 0, &huge),
        Err(IndexError::TooLarge { .. })
    ));
}

#[test]
fn corrupt_heads_are_errors() {
    let mut head = IndexHead::default();
    head.note(&record(0));
    head.note(&record(256));
    let text = String::from_utf8(head.encode()).unwrap();
    for (bad, wanted) in [
        (text.replace("256,", "128,"), "chunk_records"),
        (
            text.replace("\"first_msn\":256", "\"first_msn\":3"),
            "cannot start",
        ),
        (format!("{text}{text}"), "one line"),
        (text.replace("[{", "[{]"), "line 1"),
        (text.replace("\"version\":1", "\"version\":7"), "version 7"),
    ] {
        let err = IndexHead::decode("head.json", bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("head.json: "), "{err}");
        assert!(err.contains(wanted), "{wanted:?} not in {err}");
    }
}

#[test]
fn inserting_merges_by_msn_real_records_over_gaps() {
    let mut chunk = IndexChunk::new(0);
    assert_eq!(chunk.insert(record(3).into_gap()).unwrap(), Insert::Added);
    assert_eq!(chunk.insert(record(3)).unwrap(), Insert::FilledGap);
    assert_eq!(
        chunk.insert(record(3).into_gap()).unwrap(),
        Insert::Unchanged
    );
    assert_eq!(chunk.insert(record(3)).unwrap(), Insert::Unchanged);
    let restarted = SegmentRecord {
        program_date_time_ms: T0 + 999_000,
        ..record(3)
    };
    assert_eq!(
        chunk.insert(restarted).unwrap(),
        Insert::Conflict { kept: record(3) }
    );
    assert_eq!(chunk.records(), [record(3)]);
    assert!(matches!(
        chunk.insert(record(256)),
        Err(IndexError::InvalidRecord { msn: 256, .. })
    ));
    assert!(
        chunk
            .insert(SegmentRecord {
                duration_90k: 0,
                ..record(4)
            })
            .is_err()
    );

    // Two writers: one dropped MSN 5 (a gap), the other archived it; either order of
    // merging gives the same chunk.
    let a = chunk_of_records(0, [record(4), record(5).into_gap(), record(6)]);
    let b = chunk_of_records(0, [record(5), record(6), record(7)]);
    let mut ab = a.clone();
    assert_eq!(ab.merge_stored(&b), 0);
    let mut ba = b.clone();
    ba.merge_stored(&a);
    assert_eq!(ab, ba);
    assert_eq!(ab.records(), [record(4), record(5), record(6), record(7)]);
}

#[test]
fn chunks_for_a_time_range_come_from_the_head() {
    let mut head = IndexHead::default();
    for msn in [0, 256, 512, 768] {
        head.note(&record(msn));
    }
    let at = |msn: u64| T0 + msn as i64 * 2000;
    assert_eq!(head.chunks_for_range(at(10), at(20)), [0]);
    assert_eq!(head.chunks_for_range(at(250), at(300)), [0, 1]);
    assert_eq!(head.chunks_for_range(at(256), at(257)), [1]);
    assert_eq!(head.chunks_for_range(T0 - 10_000, at(1)), [0]);
    assert_eq!(head.chunks_for_range(T0 - 10_000, T0), Vec::<u64>::new());
    assert_eq!(head.chunks_for_range(at(5000), at(6000)), [3]);
    assert_eq!(
        IndexHead::default().chunks_for_range(0, i64::MAX),
        Vec::<u64>::new()
    );
}

#[test]
fn a_range_covers_whole_segments() {
    let records: Vec<SegmentRecord> = (0..10).map(record).collect();
    let msns = |covered: Vec<Covered>| covered.iter().map(|c| c.record.msn).collect::<Vec<_>>();
    // [3 s, 7 s): segments 1 (2-4 s), 2 (4-6 s), 3 (6-8 s).
    assert_eq!(msns(covering(&records, T0 + 3000, T0 + 7000)), [1, 2, 3]);
    // Boundaries: a segment ending at the start or starting at the end is out.
    assert_eq!(msns(covering(&records, T0 + 4000, T0 + 6000)), [2]);
    assert!(covering(&records, T0 + 30_000, T0 + 40_000).is_empty());
    assert!(covering(&records, T0 + 6000, T0 + 6000).is_empty());
    let first = covering(&records, T0, T0 + 1);
    assert_eq!(
        first,
        [Covered {
            record: record(0),
            discontinuity: false,
            new_init: true
        }]
    );
}

#[test]
fn a_range_across_a_discontinuity_an_init_change_and_a_gap() {
    // 0-2: init 0. A publisher reconnect after 5 minutes: 3-5 with init 1 and a
    // discontinuity on 3. 6 dropped by the writer (a gap), 7 archived, 8 never indexed
    // (a hole), 9 archived.
    let reconnect = 300_000;
    let mut records: Vec<SegmentRecord> = (0..10)
        .map(|msn| {
            let mut r = record(msn);
            if msn >= 3 {
                r.program_date_time_ms += reconnect;
                r.init_version = 1;
            }
            r
        })
        .collect();
    records[3].discontinuity = true;
    records[6] = records[6].into_gap();
    records.remove(8);

    let covered = covering(&records, T0, T0 + 20_000 + reconnect);
    let summary: Vec<(u64, bool, bool, bool)> = covered
        .iter()
        .map(|c| (c.record.msn, c.record.gap, c.discontinuity, c.new_init))
        .collect();
    assert_eq!(
        summary,
        [
            (0, false, false, true),
            (1, false, false, false),
            (2, false, false, false),
            (3, false, true, true),
            (4, false, false, false),
            (5, false, false, false),
            (6, true, false, false),
            (7, false, false, false),
            (9, false, true, false),
        ]
    );

    // The wall-clock hole of the reconnect holds no segment: a range inside it is empty,
    // and one starting in it begins at the first segment after the reconnect.
    assert!(covering(&records, T0 + 10_000, T0 + 100_000).is_empty());
    let after: Vec<u64> = covering(&records, T0 + 10_000, T0 + reconnect + 8000)
        .iter()
        .map(|c| c.record.msn)
        .collect();
    assert_eq!(after, [3]);
    assert!(covering(&records, T0 + 10_000, T0 + reconnect + 8000)[0].new_init);
}

#[test]
fn gaps_never_begin_or_end_a_range_but_carry_a_discontinuity() {
    let mut records: Vec<SegmentRecord> = (0..6).map(record).collect();
    for msn in [0, 2, 3, 5] {
        records[msn] = records[msn].into_gap();
    }
    // The publisher reconnected inside the dropped run: the gap record carries it.
    records[2].discontinuity = true;
    let covered = covering(&records, T0, T0 + 12_000);
    let summary: Vec<(u64, bool)> = covered
        .iter()
        .map(|c| (c.record.msn, c.discontinuity))
        .collect();
    assert_eq!(summary, [(1, false), (2, false), (3, false), (4, true)]);
    let all_gaps: Vec<SegmentRecord> = (0..3).map(|m| record(m).into_gap()).collect();
    assert!(covering(&all_gaps, T0, T0 + 6000).is_empty());
}

#[test]
fn durations_are_exact_on_the_media_timeline() {
    // 48 kHz AAC: 94 frames of 1024 samples is 2.005333... s, 180_480 ticks exactly.
    let r = SegmentRecord {
        duration_90k: 180_480,
        ..record(0)
    };
    assert!((r.duration_secs() - 2.005_333).abs() < 1e-6);
    assert_eq!(r.end_ms(), T0 + 2006);
}
