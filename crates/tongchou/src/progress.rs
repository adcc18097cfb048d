//! Terminal progress bars for long jobs; silent when standard error is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar(ProgressBar);

impl Bar {
    pub fn rows(message: &'static str) -> Bar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({per_sec}, ETA {eta})")
                .expect("valid template"),
        );
        bar.set_message(message);
        Bar(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }

    pub fn set_length(&self, rows: u64) {
        self.0.set_length(rows);
    }
}

impl tongchou_model::Progress for Bar {
    fn start(&self, estimated_rows: u64) {
        self.0.set_length(estimated_rows);
    }

    fn advance(&self, rows: u64) {
        self.0.inc(rows);
        if self.0.position() > self.0.length().unwrap_or(0) {
            self.0.set_length(self.0.position());
        }
    }
}
