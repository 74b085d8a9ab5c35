//! Tests of scan input: line numbers, cut long lines, invalid UTF-8 kept, gzip detection.

use super::*;
use std::io::Cursor;

fn lines(data: &[u8], max: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut r = BufReader::with_capacity(7, Cursor::new(data.to_vec()));
    for_each_line(&mut r, &mut buf, max, |n, l| {
        out.push((n, l.to_string()));
        Ok::<(), ()>(())
    })
    .unwrap();
    out
}

#[test]
fn lines_are_numbered_from_one_and_lose_newline_and_cr() {
    let got = lines(b"a\r\nbb\n\nlast without newline", 100);
    assert_eq!(
        got,
        vec![
            (1, "a".into()),
            (2, "bb".into()),
            (3, "".into()),
            (4, "last without newline".into())
        ]
    );
}

#[test]
fn long_lines_are_cut_and_the_next_line_is_intact() {
    let mut data = vec![b'x'; 1000];
    data.extend_from_slice(b"\nnext\n");
    let got = lines(&data, 10);
    assert_eq!(got, vec![(1, "x".repeat(10)), (2, "next".into())]);
}

#[test]
fn invalid_utf8_is_replaced_not_dropped() {
    let got = lines(b"caf\xe9 [1.2.3.4]\nok\n", 100);
    assert_eq!(got[0], (1, "caf\u{fffd} [1.2.3.4]".into()));
    assert_eq!(got[1], (2, "ok".into()));
}

#[test]
fn gzip_is_recognised_by_its_magic() {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;
    let mut gz = Vec::new();
    for part in ["one\ntwo\n", "three\n"] {
        // Two members, as `cat a.gz b.gz` gives.
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(part.as_bytes()).unwrap();
        gz.extend(e.finish().unwrap());
    }
    let mut r = maybe_gunzip(BufReader::new(Cursor::new(gz))).unwrap();
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    assert_eq!(text, "one\ntwo\nthree\n");
    let mut r = maybe_gunzip(BufReader::new(Cursor::new(b"plain\n".to_vec()))).unwrap();
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    assert_eq!(text, "plain\n");
}
