//! The history page (`drill report`, `index.html`) rendered by a real
//! browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/install-deps.sh) draws a history of passed, failed and errored
//! drills — among them a failed restore (no RTO) and a missing repository
//! (no snapshot) — to PNG, at a desktop and a phone width. Every drill must
//! be a mark on both charts, and the marks of every verdict must show up as
//! pixels of their colour. No sandbox needed.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Three verdict colours of the page (passed, failed, error), as RGB.
const GREEN: [u8; 3] = [0x17, 0x7a, 0x2c];
const RED: [u8; 3] = [0xb3, 0x26, 0x1e];
const AMBER: [u8; 3] = [0x8a, 0x5a, 0x00];

const HISTORY: &str = "started_at,tier,snapshot,snapshot_time,verdict,rto_seconds,snapshot_age_seconds,bytes_restored,checks_passed,checks_failed,run_id,report\n\
2026-01-14T18:00:00+00:00,local,aaaaaaaa11,2026-01-14T00:00:00+00:00,passed,61.000,64800.000,981467136,3,0,r1,20260114T180000Z-local.json\n\
2026-04-14T18:00:00+00:00,local,bbbbbbbb22,2026-04-14T12:00:00+00:00,failed,120.000,21600.000,981467136,2,1,r2,20260414T180000Z-local.json\n\
2026-05-14T18:00:00+00:00,local,cccccccc33,2026-05-14T12:00:00+00:00,failed,,21600.000,,0,0,r3,20260514T180000Z-local.json\n\
2026-07-14T18:00:00+00:00,local,,,error,,,,,,r4,20260714T180000Z-local.json\n\
2026-10-14T18:00:00+00:00,local,dddddddd44,2026-10-14T12:00:00+00:00,passed,65.000,21600.000,981467136,3,0,r5,20261014T180000Z-local.json\n";

/// Render `page` with headless Chromium at `width`×`height` CSS pixels to
/// `png`; panics with Chromium's output when it fails.
fn screenshot(page: &Path, png: &Path, width: u32, height: u32) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is not installed: run scripts/setup.sh (Debian's chromium package)");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(
        out.status.success() && png.is_file(),
        "chromium did not render {}: {}{}",
        page.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pixels of `png` that are exactly `rgb`, and the image's width.
fn pixels_of(png: &Path, rgb: [u8; 3]) -> (usize, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let n = buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| p[..3] == rgb)
        .count();
    (n, info.width)
}

#[test]
fn every_drill_is_drawn_in_a_real_browser() {
    let work = tempfile::tempdir().unwrap();
    let tiers = "[tiers.local]\nrepository = \"/nonexistent/local\"\npassword_file = \"/nonexistent/pw\"\n\n\
                 [tiers.cold]\nrepository = \"/nonexistent/cold\"\npassword_file = \"/nonexistent/pw\"\n";
    let config = write_config_with_tiers(
        work.path(),
        "max_rto = \"90s\"\nmax_snapshot_age = \"26h\"",
        tiers,
        &[],
        &[],
    );
    let reports = work.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(reports.join("history.csv"), HISTORY).unwrap();
    let run = drill(&config, &["report"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = reports.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();

    // The markup: each of the two charts has a mark per drill, those
    // without the figure on the axis; a banner row per configured tier.
    let xml = html.replace("<!DOCTYPE html>", "");
    let doc = roxmltree::Document::parse(&xml).expect("the page is well-formed");
    let charts: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("svg") && n.attribute("class") == Some("chart"))
        .collect();
    assert_eq!(charts.len(), 2, "RTO and snapshot age of tier local");
    let marks = |svg: &roxmltree::Node<'_, '_>, class: &str| {
        svg.descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.starts_with("drill ") && c.contains(class))
            })
            .count()
    };
    for (svg, missing) in charts.iter().zip([2, 1]) {
        assert_eq!(marks(svg, ""), 5, "every drill is a mark");
        assert_eq!(marks(svg, "missing"), missing, "drills without the figure");
        assert_eq!(marks(svg, "error"), 1, "the errored drill");
        assert_eq!(marks(svg, "failed"), 2, "the failed drills");
    }
    let banner = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("banner"))
        .expect("a status banner");
    let text: String = banner
        .descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains("cold") && text.contains("never drilled"),
        "{text}"
    );
    assert!(text.contains("2026-10-15 03:00 KST"), "local time: {text}");
    assert!(html.contains("936 MiB"), "human byte sizes");
    assert!(html.contains("name=\"viewport\""));

    // The browser, at a desktop and a phone width: each verdict's marks
    // are drawn — pixels of its colour that vanish when the marks are
    // hidden (the same colours also colour text and the limit line).
    let hidden = work.path().join("reports/index-without-marks.html");
    std::fs::write(
        &hidden,
        html.replace("</head>", "<style>.drill{display:none}</style></head>"),
    )
    .unwrap();
    for (width, name) in [(1100, "desktop"), (390, "phone")] {
        let png = work.path().join(format!("history-{name}.png"));
        let bare = work.path().join(format!("history-{name}-bare.png"));
        screenshot(&page, &png, width, 2400);
        screenshot(&hidden, &bare, width, 2400);
        for (colour, verdict) in [(GREEN, "passed"), (RED, "failed"), (AMBER, "error")] {
            let (drawn, w) = pixels_of(&png, colour);
            let (without, _) = pixels_of(&bare, colour);
            assert_eq!(w, width, "{name}: the page renders at the window's width");
            assert!(
                drawn > without + 10,
                "{name}: the {verdict} marks are drawn ({drawn} pixels of their colour, {without} without them) — {}",
                png.display()
            );
        }
        if let Ok(dir) = std::env::var("DRILL_SCREENSHOT_DIR") {
            std::fs::copy(&png, Path::new(&dir).join(format!("history-{name}.png"))).unwrap();
        }
    }
}
