//! The series functions as DataFusion aggregate UDFs: one implementation
//! ([`SeriesFunction`]) parameterised by [`Kind`], one accumulator
//! ([`SeriesAccumulator`]) that keeps the points and scores them on demand.
//!
//! Keeping the raw points (not running sums) is what lets one accumulator
//! serve both shapes: `GROUP BY` (update, then evaluate once; partial
//! states merge as lists of points) and sliding window frames (DataFusion
//! adds the rows entering the frame with `update_batch` and removes the
//! ones leaving it, oldest first, with `retract_batch`).

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Field, FieldRef, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

use super::detector::{self, Detector};
use super::score::{self, Ewma, Point};
use super::window::{Steps, WindowIndex};

/// Which score a [`SeriesFunction`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ZScore,
    RobustZScore,
    /// Third argument: `alpha` in (0, 1].
    EwmaDeviation,
    /// Third argument: the period, an `INTERVAL` (days and smaller units).
    SeasonalDelta,
    Increase,
    Rate,
    /// `(time, at)`: seconds from the latest `time` to `at` (absence).
    Staleness,
    /// The learning detector ([`super::detector`]). Optional third
    /// argument: a span, an `INTERVAL` (the sustained form).
    AnomalyScore,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::ZScore,
        Kind::RobustZScore,
        Kind::EwmaDeviation,
        Kind::SeasonalDelta,
        Kind::Increase,
        Kind::Rate,
        Kind::Staleness,
        Kind::AnomalyScore,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ZScore => "zscore",
            Kind::RobustZScore => "robust_zscore",
            Kind::EwmaDeviation => "ewma_deviation",
            Kind::SeasonalDelta => "seasonal_delta",
            Kind::Increase => "increase",
            Kind::Rate => "rate",
            Kind::Staleness => "staleness",
            Kind::AnomalyScore => "anomaly_score",
        }
    }

    /// How the function is called, for error messages.
    fn usage(self) -> &'static str {
        match self {
            Kind::ZScore => "zscore(value, time)",
            Kind::RobustZScore => "robust_zscore(value, time)",
            Kind::EwmaDeviation => "ewma_deviation(value, time, alpha), alpha in (0, 1]",
            Kind::SeasonalDelta => "seasonal_delta(value, time, INTERVAL '1 day')",
            Kind::Increase => "increase(counter, time)",
            Kind::Rate => "rate(counter, time)",
            Kind::Staleness => "staleness(time, now())",
            Kind::AnomalyScore => {
                "anomaly_score(value, time), or anomaly_score(value, time, INTERVAL '1 minute') for how anomalous the last minute is as a whole"
            }
        }
    }

    /// The argument counts the function takes.
    fn arities(self) -> &'static [usize] {
        match self {
            Kind::EwmaDeviation | Kind::SeasonalDelta => &[3],
            Kind::AnomalyScore => &[2, 3],
            _ => &[2],
        }
    }
}

/// The third argument, checked.
#[derive(Debug, Clone, Copy)]
enum Param {
    None,
    Alpha(f64),
    PeriodNs(i64),
    /// `anomaly_score`'s span.
    SpanNs(i64),
}

/// An aggregate UDF over `(value, time[, parameter])`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SeriesFunction {
    kind: Kind,
    signature: Signature,
}

impl SeriesFunction {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for SeriesFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let kind = self.kind;
        let arities = kind.arities();
        if !arities.contains(&arg_types.len()) {
            let want = match arities {
                [n] => n.to_string(),
                _ => format!("{} or {}", arities[0], arities[arities.len() - 1]),
            };
            return plan_err!(
                "{} takes {want} arguments, got {}: use {}",
                kind.name(),
                arg_types.len(),
                kind.usage()
            );
        }
        if kind == Kind::Staleness {
            return match arg_types {
                [DataType::Timestamp(_, tz), DataType::Timestamp(_, tz_at)] => Ok(vec![
                    DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
                    DataType::Timestamp(TimeUnit::Nanosecond, tz_at.clone()),
                ]),
                _ => plan_err!(
                    "staleness takes two timestamps, got {arg_types:?}: use {}",
                    kind.usage()
                ),
            };
        }
        let value = &arg_types[0];
        if !(value.is_numeric() || value == &DataType::Null) {
            return plan_err!(
                "{}: the first argument must be numeric, got {value}: use {}",
                kind.name(),
                kind.usage()
            );
        }
        let time = match &arg_types[1] {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
            other => {
                return plan_err!(
                    "{}: the second argument must be a timestamp (the time column), got {other}: use {}",
                    kind.name(),
                    kind.usage()
                );
            }
        };
        let mut out = vec![DataType::Float64, time];
        match kind {
            Kind::EwmaDeviation if arg_types[2].is_numeric() => out.push(DataType::Float64),
            Kind::SeasonalDelta | Kind::AnomalyScore
                if matches!(arg_types.get(2), Some(DataType::Interval(_))) =>
            {
                out.push(arg_types[2].clone())
            }
            Kind::AnomalyScore if arg_types.len() == 2 => {}
            Kind::EwmaDeviation | Kind::SeasonalDelta | Kind::AnomalyScore => {
                return plan_err!(
                    "{}: bad third argument of type {}: use {}",
                    kind.name(),
                    arg_types[2],
                    kind.usage()
                );
            }
            _ => {}
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn is_nullable(&self) -> bool {
        true
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(self.series_accumulator(&acc_args)?))
    }

    /// A bounded window frame: rows leave it as it slides, and each row
    /// is scored as the frame's current row.
    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let mut acc = self.series_accumulator(&args)?;
        acc.window = true;
        Ok(Box::new(acc))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new_list(
                format!("{}[times]", args.name),
                Field::new_list_field(DataType::Int64, true),
                true,
            )),
            Arc::new(Field::new_list(
                format!("{}[values]", args.name),
                Field::new_list_field(DataType::Float64, true),
                true,
            )),
        ])
    }
}

impl SeriesFunction {
    fn series_accumulator(&self, acc_args: &AccumulatorArgs) -> Result<SeriesAccumulator> {
        let param = match self.kind {
            Kind::EwmaDeviation => {
                let alpha = match literal(self.kind, acc_args)? {
                    ScalarValue::Float64(Some(a)) => a,
                    other => {
                        return plan_err!(
                            "ewma_deviation: alpha must be a number, got {other}: use {}",
                            self.kind.usage()
                        );
                    }
                };
                if !(alpha > 0.0 && alpha <= 1.0) {
                    return plan_err!(
                        "ewma_deviation: alpha must be in (0, 1], got {alpha}: use {}",
                        self.kind.usage()
                    );
                }
                Param::Alpha(alpha)
            }
            Kind::SeasonalDelta => {
                Param::PeriodNs(interval_ns(self.kind, &literal(self.kind, acc_args)?)?)
            }
            Kind::AnomalyScore if acc_args.exprs.len() == 3 => {
                Param::SpanNs(interval_ns(self.kind, &literal(self.kind, acc_args)?)?)
            }
            _ => Param::None,
        };
        Ok(SeriesAccumulator::new(self.kind, param))
    }
}

/// The constant third argument.
fn literal(kind: Kind, args: &AccumulatorArgs) -> Result<ScalarValue> {
    match args.exprs.get(2).and_then(|e| e.downcast_ref::<Literal>()) {
        Some(l) => Ok(l.value().clone()),
        None => plan_err!(
            "{}: the third argument must be a constant: use {}",
            kind.name(),
            kind.usage()
        ),
    }
}

/// An `INTERVAL` of days and smaller units, in nanoseconds, if it is one
/// (and fits: `None` past ±292 years).
pub fn interval_literal_ns(v: &ScalarValue) -> Option<i64> {
    const DAY_NS: i64 = 86_400 * 1_000_000_000;
    match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => i64::from(i.days)
            .checked_mul(DAY_NS)?
            .checked_add(i.nanoseconds),
        ScalarValue::IntervalDayTime(Some(i)) => i64::from(i.days)
            .checked_mul(DAY_NS)?
            .checked_add(i64::from(i.milliseconds) * 1_000_000),
        _ => None,
    }
}

/// The third argument as a positive interval (`seasonal_delta`'s period,
/// `anomaly_score`'s span), in nanoseconds.
fn interval_ns(kind: Kind, v: &ScalarValue) -> Result<i64> {
    let name = kind.name();
    let what = if kind == Kind::SeasonalDelta {
        "period"
    } else {
        "span"
    };
    let ns = match (interval_literal_ns(v), v) {
        (Some(ns), _) => ns,
        (
            None,
            ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)),
        ) => {
            return plan_err!(
                "{name}: months have no fixed length; give the {what} in days or smaller units, e.g. INTERVAL '7 days': use {}",
                kind.usage()
            );
        }
        (None, other) => {
            return plan_err!(
                "{name}: the third argument must be an INTERVAL, got {other}: use {}",
                kind.usage()
            );
        }
    };
    if ns <= 0 {
        return plan_err!(
            "{name}: the {what} must be positive, got {v}: use {}",
            kind.usage()
        );
    }
    Ok(ns)
}

/// The points of one group or window frame, in arrival order. A row with a
/// NULL, NaN or infinite value (or a NULL time) is kept as an invalid point
/// so that `retract_batch` stays aligned with the rows DataFusion added.
///
/// In a window (a sliding frame, or a frame evaluated row after row), the
/// scored row is the current one: when its value is invalid the scores are
/// NULL, not an earlier row's. While rows come in time order, the window's
/// baselines are kept up to date row by row ([`WindowIndex`], a running
/// EWMA) instead of sorting the frame for each row.
#[derive(Debug)]
pub struct SeriesAccumulator {
    kind: Kind,
    param: Param,
    points: VecDeque<Point>,
    /// Evaluated as a window: set for sliding frames, and once evaluated
    /// (a group is evaluated once; a growing frame once per row).
    window: bool,
    evaluated: bool,
    /// Every valid point so far came at or after the one before it.
    in_order: bool,
    last_time: i64,
    retracted: bool,
    /// `zscore` and `robust_zscore` in a window: the frame's valid values.
    index: Option<WindowIndex>,
    /// `ewma_deviation` in a growing window: the recurrence over every
    /// valid point but the newest, and the newest.
    ewma: Option<EwmaRun>,
    /// `ewma_deviation` in a sliding window: the steps of the frame's
    /// valid values (its recurrence is run over the frame for each row).
    steps: Option<Steps>,
    /// `anomaly_score` in a growing window: the detector over every valid
    /// point so far, and the newest one's score.
    detector: Option<(Detector, Option<f64>)>,
    /// `anomaly_score` with a span in a growing window: the sustained
    /// score kept up to date (each point learned once).
    span_run: Option<detector::SpanRun>,
}

impl SeriesAccumulator {
    fn new(kind: Kind, param: Param) -> Self {
        Self {
            kind,
            param,
            points: VecDeque::new(),
            window: false,
            evaluated: false,
            in_order: true,
            last_time: i64::MIN,
            retracted: false,
            index: None,
            ewma: None,
            steps: None,
            detector: None,
            span_run: None,
        }
    }

    fn push_arrays(&mut self, values: &ArrayRef, times: &ArrayRef) -> Result<()> {
        // A window calls this once per row with one-row slices: the usual
        // types (FLOAT values, nanosecond `time`) are read in place, as a
        // cast would allocate an array per row.
        let cast_values;
        let values = match values.data_type() {
            DataType::Float64 => values.as_primitive::<Float64Type>(),
            // staleness: the `at` timestamps, as nanoseconds.
            DataType::Timestamp(..) => {
                cast_values = cast(&cast(values, &DataType::Int64)?, &DataType::Float64)?;
                cast_values.as_primitive::<Float64Type>()
            }
            _ => {
                cast_values = cast(values, &DataType::Float64)?;
                cast_values.as_primitive::<Float64Type>()
            }
        };
        // A cast keeps the nulls: read them from the column as given.
        let time_nulls = times.logical_nulls();
        let cast_times;
        let times: &[i64] = match times.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                times.as_primitive::<TimestampNanosecondType>().values()
            }
            DataType::Int64 => times.as_primitive::<Int64Type>().values(),
            _ => {
                cast_times = cast(times, &DataType::Int64)?;
                cast_times.as_primitive::<Int64Type>().values()
            }
        };
        if values.len() != times.len() {
            return exec_err!("series function: value and time columns differ in length");
        }
        for (i, &t) in times.iter().enumerate() {
            let time_valid = time_nulls.as_ref().is_none_or(|n| n.is_valid(i));
            let p = if values.is_valid(i) && time_valid {
                (t, values.value(i))
            } else {
                (0, f64::NAN)
            };
            self.push(p);
        }
        Ok(())
    }

    fn push(&mut self, p: Point) {
        self.points.push_back(p);
        if !p.1.is_finite() {
            return;
        }
        if p.0 < self.last_time {
            self.in_order = false;
            self.index = None;
            self.ewma = None;
            self.steps = None;
            self.detector = None;
            self.span_run = None;
        }
        self.last_time = self.last_time.max(p.0);
        if let Some(idx) = &mut self.index {
            idx.add(p.1);
        }
        if let Some(run) = &mut self.ewma {
            run.push(p.1, self.param);
        }
        if let Some(steps) = &mut self.steps {
            steps.add(p.1);
        }
        if let Some((d, last)) = &mut self.detector {
            *last = d.push(p.1);
        }
        if let Some(run) = &mut self.span_run {
            run.push(p);
        }
    }

    /// The valid points, sorted by time (stable: ties keep arrival order).
    fn sorted(&self) -> Vec<Point> {
        let mut v: Vec<Point> = self
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        if !self.in_order {
            v.sort_by_key(|p| p.0);
        }
        v
    }

    /// The score of a window's current row from the kept baselines;
    /// `None` when they are not kept (the caller scores the points).
    fn window_score(&mut self, x: f64) -> Option<Option<f64>> {
        if !self.in_order {
            return None;
        }
        match self.kind {
            Kind::ZScore | Kind::RobustZScore => {
                let idx = self.index.get_or_insert_with(|| {
                    let mut idx = WindowIndex::default();
                    finite(&self.points).for_each(|v| idx.add(v));
                    idx
                });
                if idx.len() <= score::MIN_BASELINE {
                    return Some(None);
                }
                let b = match self.kind {
                    Kind::ZScore => idx.mean_baseline(x),
                    _ => idx.median_baseline(x),
                };
                Some(Some(b.score(x)))
            }
            Kind::EwmaDeviation if !self.retracted => {
                let param = self.param;
                let run = self.ewma.get_or_insert_with(|| {
                    let mut run = EwmaRun::default();
                    finite(&self.points).for_each(|v| run.push(v, param));
                    run
                });
                Some(run.score(x))
            }
            Kind::EwmaDeviation => {
                let Param::Alpha(alpha) = self.param else {
                    return None;
                };
                let steps = self.steps.get_or_insert_with(|| {
                    let mut steps = Steps::default();
                    finite(&self.points).for_each(|v| steps.add(v));
                    steps
                });
                // Every valid value but the newest (x, the back).
                let mut values = finite(&self.points);
                let valid = finite(&self.points).count();
                if valid <= score::MIN_BASELINE {
                    return Some(None);
                }
                let mut run = Ewma::new(values.next().expect("counted"));
                for v in values.take(valid - 2) {
                    run.push(v, alpha);
                }
                // x's step is in `steps`; the baseline's finest is no
                // coarser, and Baseline::score takes the finer of the two.
                Some(Some(run.baseline(|| steps.finest()).score(x)))
            }
            // A growing frame: the detector learns each row once. (A
            // sliding one runs it over the frame: the caller does.)
            Kind::AnomalyScore if !self.retracted && matches!(self.param, Param::None) => {
                let (_, last) = self
                    .detector
                    .get_or_insert_with(|| Detector::learned(finite(&self.points)));
                Some(*last)
            }
            Kind::AnomalyScore if !self.retracted => {
                let Param::SpanNs(span_ns) = self.param else {
                    return None;
                };
                let run = self.span_run.get_or_insert_with(|| {
                    let mut run = detector::SpanRun::new(span_ns);
                    self.points
                        .iter()
                        .filter(|p| p.1.is_finite())
                        .for_each(|p| run.push(*p));
                    run
                });
                Some(run.score())
            }
            _ => None,
        }
    }
}

/// The valid (finite) values of `points`, in arrival order.
fn finite(points: &VecDeque<Point>) -> impl Iterator<Item = f64> + '_ {
    points.iter().map(|p| p.1).filter(|v| v.is_finite())
}

/// A growing window's EWMA: the recurrence over every valid point but the
/// newest (the one a row scores), and the newest.
#[derive(Debug, Default)]
struct EwmaRun {
    run: Option<Ewma>,
    folded: usize,
    /// The finest step exponent of the folded points.
    step_exp: i32,
    newest: Option<f64>,
}

impl EwmaRun {
    fn push(&mut self, v: f64, param: Param) {
        let Param::Alpha(alpha) = param else { return };
        let Some(prev) = self.newest.replace(v) else {
            return;
        };
        match &mut self.run {
            Some(r) => r.push(prev, alpha),
            None => self.run = Some(Ewma::new(prev)),
        }
        self.folded += 1;
        self.step_exp = self.step_exp.min(score::step_exponent(prev));
    }

    /// The newest point `x`'s score.
    fn score(&self, x: f64) -> Option<f64> {
        let run = self.run.filter(|_| self.folded >= score::MIN_BASELINE)?;
        Some(run.baseline(|| self.step_exp).score(x))
    }
}

impl Accumulator for SeriesAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match self.kind {
            // staleness(time, at): the point is (time, at).
            Kind::Staleness => self.push_arrays(&values[1], &values[0]),
            _ => self.push_arrays(&values[0], &values[1]),
        }
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values[0].len();
        if n > self.points.len() {
            return exec_err!(
                "{}: asked to retract {n} rows of {}",
                self.kind.name(),
                self.points.len()
            );
        }
        for p in self.points.drain(..n) {
            if !p.1.is_finite() {
                continue;
            }
            if let Some(idx) = &mut self.index {
                idx.remove(p.1);
            }
            if let Some(steps) = &mut self.steps {
                steps.remove(p.1);
            }
        }
        self.retracted = true;
        self.ewma = None;
        self.detector = None;
        self.span_run = None;
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let window = self.window || self.evaluated;
        self.evaluated = true;
        let scores_current_row = matches!(
            self.kind,
            Kind::ZScore
                | Kind::RobustZScore
                | Kind::EwmaDeviation
                | Kind::SeasonalDelta
                | Kind::AnomalyScore
        );
        if window && scores_current_row {
            match self.points.back() {
                Some(p) if p.1.is_finite() => {
                    if let Some(v) = self.window_score(p.1) {
                        return Ok(ScalarValue::Float64(v));
                    }
                }
                _ => return Ok(ScalarValue::Float64(None)),
            }
        }
        let p = self.sorted();
        let v = match (self.kind, self.param) {
            (Kind::ZScore, _) => score::zscore(&p),
            (Kind::RobustZScore, _) => score::robust_zscore(&p),
            (Kind::EwmaDeviation, Param::Alpha(a)) => score::ewma_deviation(&p, a),
            (Kind::SeasonalDelta, Param::PeriodNs(ns)) => score::seasonal_delta(&p, ns),
            (Kind::Increase, _) => score::increase(&p),
            (Kind::Rate, _) => score::rate(&p),
            (Kind::Staleness, _) => score::staleness(&p),
            (Kind::AnomalyScore, Param::SpanNs(ns)) => detector::span_score(&p, ns),
            (Kind::AnomalyScore, _) => detector::anomaly_score(&p),
            (kind, param) => {
                return exec_err!("{}: missing parameter ({param:?})", kind.name());
            }
        };
        Ok(ScalarValue::Float64(v))
    }

    fn size(&self) -> usize {
        // The index holds each valid value again, with a step count.
        let index = self.index.as_ref().map_or(0, |i| i.len() * 16);
        // The detector is inline (Detector::BYTES).
        let span = self
            .span_run
            .as_ref()
            .map_or(0, |r| r.pending_len() * size_of::<Point>());
        size_of_val(self) + self.points.capacity() * size_of::<Point>() + index + span
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let p = self.sorted();
        let times = Int64Array::from_iter_values(p.iter().map(|p| p.0));
        let values = Float64Array::from_iter_values(p.iter().map(|p| p.1));
        Ok(vec![
            ScalarValue::List(Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(DataType::Int64, true)),
                arrow::buffer::OffsetBuffer::from_lengths([times.len()]),
                Arc::new(times),
                None,
            ))),
            ScalarValue::List(Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(DataType::Float64, true)),
                arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
                Arc::new(values),
                None,
            ))),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let times = states[0].as_list::<i32>();
        let values = states[1].as_list::<i32>();
        for i in 0..times.len() {
            if times.is_null(i) || values.is_null(i) {
                continue;
            }
            self.push_arrays(&values.value(i), &times.value(i))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    /// Row `i`'s value: quantized noise, flat stretches, and NULLs.
    fn value(i: usize) -> Option<f64> {
        let noise = ((i * 7919) % 13) as f64 - 6.0;
        match i % 97 {
            0 | 45 => None,
            _ if (i / 120) % 3 == 1 => Some(40.0),
            _ => Some(50.0 + noise * 0.5),
        }
    }

    fn arrays(rows: std::ops::Range<usize>) -> Vec<ArrayRef> {
        let v: Float64Array = rows.clone().map(value).collect();
        let t = Int64Array::from_iter_values(rows.map(|i| i as i64 * S));
        vec![Arc::new(v), Arc::new(t)]
    }

    /// Scored row by row as DataFusion drives a window — sliding (rows
    /// added and retracted) and growing — each row scores as the slice
    /// function does over its frame, and a row without a value scores
    /// NULL.
    #[test]
    fn window_rows_score_as_their_frames_do() {
        let kinds = [
            (Kind::ZScore, Param::None),
            (Kind::RobustZScore, Param::None),
            (Kind::EwmaDeviation, Param::Alpha(0.2)),
            (Kind::AnomalyScore, Param::None),
            (Kind::AnomalyScore, Param::SpanNs(30 * S)),
        ];
        for (kind, param) in kinds {
            for width in [Some(5usize), Some(60), Some(200), None] {
                let mut acc = SeriesAccumulator::new(kind, param);
                acc.window = width.is_some();
                for i in 0..700 {
                    acc.update_batch(&arrays(i..i + 1)).unwrap();
                    let first = width.map_or(0, |w| (i + 1).saturating_sub(w));
                    if let Some(w) = width
                        && i >= w
                    {
                        acc.retract_batch(&arrays(i - w..i - w + 1)).unwrap();
                    }
                    let got = match acc.evaluate().unwrap() {
                        ScalarValue::Float64(v) => v,
                        other => panic!("{other:?}"),
                    };
                    let frame: Vec<Point> = (first..=i)
                        .filter_map(|j| value(j).map(|v| (j as i64 * S, v)))
                        .collect();
                    let want = match value(i) {
                        // The first row scores as a group would (nothing
                        // before it); later NULL rows score NULL.
                        None if i > 0 => None,
                        _ => match kind {
                            Kind::ZScore => score::zscore(&frame),
                            Kind::RobustZScore => score::robust_zscore(&frame),
                            Kind::AnomalyScore => match param {
                                Param::SpanNs(ns) => detector::span_score(&frame, ns),
                                _ => detector::anomaly_score(&frame),
                            },
                            _ => score::ewma_deviation(&frame, 0.2),
                        },
                    };
                    let same = match (got, want) {
                        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                        (a, b) => a == b,
                    };
                    assert!(
                        same,
                        "{kind:?} width {width:?} row {i}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
