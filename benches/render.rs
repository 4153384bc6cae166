//! Rendering the console: the workloads screen with 5,000 workloads, the first frame and a
//! frame after a filter keystroke, on a 200x50 test terminal.

#[path = "../tests/ui_fixture/mod.rs"]
mod ui_fixture;

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use pilothouse::ui::app::App;

fn frame(terminal: &mut Terminal<TestBackend>, app: &mut App) {
    terminal.draw(|f| pilothouse::ui::draw(f, app)).unwrap();
}

fn render_5000_workloads(c: &mut Criterion) {
    let mut app = ui_fixture::app_with(ui_fixture::many_workloads(5000));
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
    c.bench_function("draw workloads screen, 5000 workloads, 200x50", |b| {
        b.iter(|| frame(&mut terminal, &mut app))
    });
    c.bench_function("re-sort and draw after a change, 5000 workloads", |b| {
        b.iter(|| {
            app.table.mark_stale();
            frame(&mut terminal, &mut app)
        })
    });
    c.bench_function("filter keystroke and draw, 5000 workloads", |b| {
        let mut flip = false;
        b.iter(|| {
            flip = !flip;
            app.table
                .set_filter(if flip { "service4" } else { "service" })
                .unwrap();
            frame(&mut terminal, &mut app)
        })
    });
}

fn first_frame_200_containers(c: &mut Criterion) {
    c.bench_function("store 200 containers and draw the first frame", |b| {
        b.iter(|| {
            let mut app = ui_fixture::app_with(ui_fixture::many_workloads(200));
            let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
            frame(&mut terminal, &mut app)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = render_5000_workloads, first_frame_200_containers
}
criterion_main!(benches);
