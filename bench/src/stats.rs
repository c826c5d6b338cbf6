//! Samples of one measured operation and their medians.

/// One run of a measured operation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Wall time.
    pub seconds: f64,
    /// Bytes the server sent, counted by the proxy in front of it.
    pub bytes: u64,
    /// IMAP commands sent, where they could be counted.
    pub commands: Option<u64>,
    /// CPU seconds of the client side (imapfs and the command run on it, mbsync, grep, or
    /// the floor client).
    pub client_cpu: Option<f64>,
    /// CPU seconds of Dovecot (all its processes, TLS included).
    pub server_cpu: Option<f64>,
}

/// Every run of one measured operation, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub samples: Vec<Sample>,
}

impl Series {
    pub fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    pub fn runs(&self) -> usize {
        self.samples.len()
    }

    /// Median wall time.
    pub fn seconds(&self) -> f64 {
        median(self.samples.iter().map(|s| s.seconds).collect())
    }

    /// Median bytes from the server.
    pub fn bytes(&self) -> u64 {
        median(self.samples.iter().map(|s| s.bytes as f64).collect()).round() as u64
    }

    /// Median command count, if any run counted them.
    pub fn commands(&self) -> Option<u64> {
        median_of(self.samples.iter().map(|s| s.commands.map(|c| c as f64)))
            .map(|c| c.round() as u64)
    }

    /// Median client CPU seconds, if measured.
    pub fn client_cpu(&self) -> Option<f64> {
        median_of(self.samples.iter().map(|s| s.client_cpu))
    }

    /// Median server CPU seconds, if measured.
    pub fn server_cpu(&self) -> Option<f64> {
        median_of(self.samples.iter().map(|s| s.server_cpu))
    }

    /// Sets the command count of every run (counted in a separate pass).
    pub fn set_commands(&mut self, commands: u64) {
        for sample in &mut self.samples {
            sample.commands = Some(commands);
        }
    }
}

/// The median of the values present, if any.
fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    (!present.is_empty()).then(|| median(present))
}

/// The median; the mean of the middle two for an even count; 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if !values.len().is_multiple_of(2) {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seconds: f64, bytes: u64, commands: Option<u64>) -> Sample {
        Sample {
            seconds,
            bytes,
            commands,
            client_cpu: Some(seconds * 2.0),
            server_cpu: None,
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn series_take_each_column_separately() {
        let mut series = Series::default();
        series.push(sample(0.9, 100, Some(3)));
        series.push(sample(0.1, 300, None));
        series.push(sample(0.5, 200, Some(5)));
        assert_eq!(series.seconds(), 0.5);
        assert_eq!(series.bytes(), 200);
        assert_eq!(series.commands(), Some(4));
        assert_eq!(series.client_cpu(), Some(1.0));
        assert_eq!(series.server_cpu(), None);
        series.set_commands(7);
        assert_eq!(series.commands(), Some(7));
        assert_eq!(Series::default().commands(), None);
    }
}
