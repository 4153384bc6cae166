//! Log ingest: raw lines through the sanitizer into a bounded buffer, as a flooding container
//! feeds the logs view, and the sanitizer alone per kind of line.
//!
//! Not a test: it measures, and asserts nothing about how fast is fast enough.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use pilothouse::logbuf::LogBuffer;
use pilothouse::platform::LogRecord;
use pilothouse::text::sanitize;

const LINES: usize = 1_000_000;
const MAX_LINES: usize = 10_000;
const MAX_BYTES: usize = 8 << 20;
const REPLICAS: [&str; 5] = [
    "shop-web-1",
    "shop-web-2",
    "shop-web-3",
    "shop-api-1",
    "shop-db-1",
];

/// The kinds of line in the mix, with how many of every hundred lines are of that kind.
const KINDS: [(&str, usize); 6] = [
    ("plain", 62),
    ("sgr", 20),
    ("escapes", 7),
    ("long_2k", 4),
    ("invalid_utf8", 4),
    ("wide", 3),
];

fn line_of_kind(kind: &str, i: usize) -> Vec<u8> {
    let ts = format!(
        "2024-05-01T12:{:02}:{:02}.{:03}Z",
        i / 3600 % 60,
        i / 60 % 60,
        i % 1000
    );
    match kind {
        "plain" => format!(
            "{ts} INFO http request method=GET path=/api/items/{i} status=200 dur={}ms\n",
            i % 250
        )
        .into_bytes(),
        "sgr" => format!(
            "\x1b[2m{ts}\x1b[0m \x1b[32mINFO\x1b[0m \x1b[1mworker\x1b[22m job={i} \
             \x1b[38;5;{}mqueue\x1b[39m \x1b[38;2;200;120;{}mlatency\x1b[0m={}ms\r\n",
            i % 256,
            i % 256,
            i % 90
        )
        .into_bytes(),
        "escapes" => format!(
            "\x1b]0;build {i}\x07downloading\tlayer {i}\r[=====>    ] {}%\x1b[K\x1b[2A\
             \x1b]8;;https://example.invalid/{i}\x1b\\details\x1b]8;;\x1b\\\x07\n",
            i % 100
        )
        .into_bytes(),
        "long_2k" => {
            let mut line = format!("{ts} DEBUG payload=").into_bytes();
            while line.len() < 2048 {
                line.extend_from_slice(
                    b"{\"id\":12345,\"name\":\"widget\",\"tags\":[\"a\",\"b\"]},",
                );
            }
            line.push(b'\n');
            line
        }
        "invalid_utf8" => {
            let mut line = format!("{ts} WARN bad bytes from upstream: ").into_bytes();
            line.extend_from_slice(b"\xff\xfe caf\xc3 \x80\x9b31m end\xe2\x82\n");
            line
        }
        _ => format!("{ts} INFO 注文を受け付けました order={i} 🚀 cafe\u{301} ✓\n").into_bytes(),
    }
}

/// A thousand lines in the mix of [`KINDS`], cycled through by the ingest bench.
fn corpus() -> Vec<Vec<u8>> {
    let mut lines = Vec::with_capacity(1000);
    for block in 0..10 {
        for (kind, share) in KINDS {
            for j in 0..share {
                lines.push(line_of_kind(kind, block * 100 + j));
            }
        }
    }
    lines
}

fn ingest(lines: &[Vec<u8>], names: &[String]) -> LogBuffer {
    let mut buf = LogBuffer::new(MAX_LINES, MAX_BYTES);
    for i in 0..LINES {
        let raw = &lines[i % lines.len()];
        buf.push(LogRecord {
            replica: names[i % names.len()].clone(),
            stderr: i % 11 == 0,
            timestamp: None,
            line: sanitize(raw),
        });
    }
    buf
}

fn bench_ingest(c: &mut Criterion) {
    let lines = corpus();
    let names: Vec<String> = REPLICAS.iter().map(|s| (*s).to_owned()).collect();
    let mut group = c.benchmark_group("ingest");
    // One ingest takes about a second: ten flat samples of one iteration each keep the whole
    // bench near a minute on two cores.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(12));
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("1m_lines_into_10k_8mib_buffer", |b| {
        b.iter(|| {
            let buf = ingest(&lines, &names);
            black_box((buf.len(), buf.bytes(), buf.dropped()))
        })
    });
    group.finish();
}

fn bench_sanitize(c: &mut Criterion) {
    let mut group = c.benchmark_group("sanitize");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (kind, _) in KINDS {
        let line = line_of_kind(kind, 4242);
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(kind, |b| b.iter(|| sanitize(black_box(&line))));
    }
    group.finish();
}

criterion_group!(benches, bench_ingest, bench_sanitize);
criterion_main!(benches);
