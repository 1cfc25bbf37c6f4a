// The console's overview: which services answer, what fires, and small time-series charts of the
// figures monitor-svc stores (QueryMetric), redrawn every refresh. uPlot draws them: about 20 KB
// gzipped, canvas-based, and only in this chunk.

import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import uPlot from "uplot";

import type { AdminContext, MountedSection } from "../admin";
import { h, replace, setText } from "../dom";
import type { GetOverviewResponse, QueryMetricResponse } from "../gen/xiaowo/monitor/v1/monitor_pb";
import { formatNumber, formatTime, type MessageKey, type Shown, t, userText } from "../i18n";
import { field } from "../ui";
import { alertItem } from "./lists";

/** How often the overview asks again while it is on screen. */
const REFRESH_MS = 15_000;

interface Range {
  key: MessageKey;
  seconds: number;
  /** Bucket width: about a hundred points across the chart. */
  stepSeconds: number;
}

const RANGES: readonly Range[] = [
  { key: "admin.overview.range5m", seconds: 300, stepSeconds: 5 },
  { key: "admin.overview.range1h", seconds: 3_600, stepSeconds: 30 },
  { key: "admin.overview.range6h", seconds: 21_600, stepSeconds: 180 },
  { key: "admin.overview.range24h", seconds: 86_400, stepSeconds: 600 },
];

interface ChartSpec {
  id: string;
  title: MessageKey;
  series: { metric: string; label?: MessageKey }[];
  format: (value: number) => Shown;
  /** A count of things: the axis marks whole numbers only. */
  whole?: boolean;
}

const count = (value: number): Shown => formatNumber(value, { maximumFractionDigits: 0 });
const rate = (value: number): Shown => formatNumber(value, { maximumFractionDigits: value < 10 ? 2 : 0 });
const seconds = (value: number): Shown =>
  value < 1
    ? formatNumber(value * 1000, { style: "unit", unit: "millisecond", unitDisplay: "short", maximumFractionDigits: value < 0.01 ? 1 : 0 })
    : formatNumber(value, { style: "unit", unit: "second", unitDisplay: "short", maximumFractionDigits: 2 });
const ratio = (value: number): Shown => formatNumber(value, { style: "percent", maximumFractionDigits: 2 });
const bytes = (value: number): Shown =>
  value >= 1024 ** 3
    ? formatNumber(value / 1024 ** 3, { style: "unit", unit: "gigabyte", unitDisplay: "short", maximumFractionDigits: 1 })
    : formatNumber(value / 1024 ** 2, { style: "unit", unit: "megabyte", unitDisplay: "short", maximumFractionDigits: 0 });

/** The charts, in the order an operator reads them: load, speed, failures, then the domain. */
export const CHARTS: readonly ChartSpec[] = [
  { id: "qps", title: "admin.chart.qps", series: [{ metric: "requests_per_second" }], format: rate },
  {
    id: "latency",
    title: "admin.chart.latency",
    series: [
      { metric: "latency_p50_seconds", label: "admin.chart.p50" },
      { metric: "latency_p99_seconds", label: "admin.chart.p99" },
    ],
    format: seconds,
  },
  { id: "errors", title: "admin.chart.errors", series: [{ metric: "error_ratio" }], format: ratio },
  { id: "connections", title: "admin.chart.connections", series: [{ metric: "xiaowo_open_connections" }], format: count, whole: true },
  { id: "memory", title: "admin.chart.memory", series: [{ metric: "resident_memory_bytes" }], format: bytes },
  { id: "watchers", title: "admin.chart.watchers", series: [{ metric: "xiaowo_sync_watch_streams" }], format: count, whole: true },
  { id: "rooms", title: "admin.chart.rooms", series: [{ metric: "xiaowo_rooms_active" }], format: count, whole: true },
  { id: "sessions", title: "admin.chart.sessions", series: [{ metric: "xiaowo_sessions_live" }], format: count, whole: true },
];

/** The target an all-in-one install reports under; in split mode the first one listed. */
const ALL_IN_ONE = "xiaowo";

/** One chart card: a title, the latest value, and the uPlot canvas. */
class Chart {
  readonly element: HTMLElement;
  private readonly latest = h("span", { class: "admin-chart-value" });
  private readonly empty = h("p", { class: "admin-chart-empty" });
  private readonly legend = h("div", { class: "admin-chart-legend" });
  private readonly canvas = h("div", { class: "admin-chart-canvas" });
  private plot: uPlot | undefined;
  private range: [number, number] = [0, 1];

  constructor(private readonly spec: ChartSpec) {
    this.element = h(
      "figure",
      { class: "admin-chart", attrs: { "data-chart": spec.id, "data-points": "0" } },
      h("figcaption", {}, h("span", { class: "admin-chart-title" }, t(spec.title)), this.latest),
      this.canvas,
      this.empty,
      this.legend,
    );
    this.legend.hidden = spec.series.length < 2;
    replace(
      this.legend,
      ...spec.series.map((series, index) =>
        h("span", { class: `admin-legend-item series-${index}` }, h("span", { class: "admin-legend-swatch", attrs: { "aria-hidden": "true" } }), series.label ? t(series.label) : null),
      ),
    );
  }

  /** Draws `columns` (times in seconds, then one column per series) over `range`. */
  draw(columns: uPlot.AlignedData, range: [number, number]): void {
    this.range = range;
    const values = columns.slice(1) as (number | null)[][];
    const points = values[0]?.filter((value) => value !== null).length ?? 0;
    this.element.setAttribute("data-points", String(points));
    const last = (values[values.length - 1] ?? []).filter((value): value is number => value !== null).pop();
    setText(this.latest, last === undefined ? t("admin.never") : this.spec.format(last));
    this.latest.classList.toggle("muted", last === undefined);
    setText(this.empty, t("admin.overview.noData"));
    this.empty.hidden = points > 0;
    const width = Math.max(200, Math.floor(this.canvas.clientWidth || this.element.clientWidth - 32));
    if (!this.plot) {
      this.plot = new uPlot(this.options(width), columns, this.canvas);
    } else {
      this.plot.setData(columns);
    }
  }

  resize(): void {
    if (this.plot && this.canvas.clientWidth > 0) {
      this.plot.setSize({ width: Math.floor(this.canvas.clientWidth), height: CHART_HEIGHT });
    }
  }

  destroy(): void {
    this.plot?.destroy();
    this.plot = undefined;
  }

  private options(width: number): uPlot.Options {
    const style = getComputedStyle(document.documentElement);
    const colour = (name: string, fallback: string): string => style.getPropertyValue(name).trim() || fallback;
    const palette = [colour("--chart-1", "#c03a1b"), colour("--chart-2", "#2f6fdb")];
    const muted = colour("--muted", "#5e5850");
    const grid = colour("--border", "#e3dcd3");
    const font = `11px ${style.getPropertyValue("--font") || "sans-serif"}`;
    const format = this.spec.format;
    return {
      width,
      height: CHART_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      padding: [8, 8, 0, 0],
      scales: {
        x: { time: true, range: () => this.range },
        y: { range: (_plot, _min, max) => [0, max > 0 ? max * 1.15 : this.spec.whole ? 2 : 1] },
      },
      axes: [
        {
          stroke: muted,
          font,
          size: 28,
          grid: { show: false },
          ticks: { stroke: grid, size: 4 },
          values: (_plot, splits) => splits.map((split) => formatTime(new Date(split * 1000))),
        },
        {
          stroke: muted,
          font,
          size: 56,
          gap: 4,
          grid: { stroke: grid, width: 1 },
          ticks: { show: false },
          ...(this.spec.whole ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 100_000, 1_000_000] } : {}),
          values: (_plot, splits) => splits.map((split) => format(split)),
        },
      ],
      series: [
        {},
        ...this.spec.series.map((series, index) => ({
          label: series.label ? t(series.label) : t(this.spec.title),
          stroke: palette[index] ?? palette[0],
          width: 2,
          fill: index === 0 ? `${palette[0]}1f` : undefined,
          spanGaps: false,
          points: { size: 4 },
        })),
      ],
    };
  }
}

const CHART_HEIGHT = 140;

function seriesOf(response: QueryMetricResponse): Map<number, number> {
  const points = new Map<number, number>();
  for (const point of response.points) {
    if (point.time) {
      points.set(Math.round(timestampDate(point.time).getTime() / 1000), point.value);
    }
  }
  return points;
}

/** The series on one time axis (a bucket missing from one series is a gap in it). */
function aligned(series: Map<number, number>[]): uPlot.AlignedData {
  const times = [...new Set(series.flatMap((points) => [...points.keys()]))].sort((a, b) => a - b);
  return [times, ...series.map((points) => times.map((time) => points.get(time) ?? null))];
}

export function mountOverview(panel: HTMLElement, context: AdminContext): MountedSection {
  let service = "";
  let range: Range = RANGES[1] ?? { key: "admin.overview.range1h", seconds: 3_600, stepSeconds: 30 };
  const serviceSelect = h("select", { attrs: { id: "overview-service" } });
  const rangeSelect = h("select", { attrs: { id: "overview-range" } });
  for (const option of RANGES) {
    rangeSelect.appendChild(h("option", { attrs: { value: String(option.seconds) } }, t(option.key)));
  }
  rangeSelect.value = String(range.seconds);
  const targets = h("ul", { class: "admin-targets", attrs: { id: "overview-targets" } });
  const firing = h("div", { class: "admin-firing", attrs: { id: "overview-firing" } });
  const charts = CHARTS.map((spec) => new Chart(spec));
  replace(
    panel,
    h(
      "div",
      { class: "admin-toolbar" },
      h("div", { class: "admin-filters" }, field(t("admin.overview.service"), serviceSelect), field(t("admin.overview.range"), rangeSelect)),
    ),
    firing,
    h("h2", { class: "visually-hidden" }, t("admin.overview.targets")),
    targets,
    h("div", { class: "admin-charts", attrs: { id: "overview-charts" } }, ...charts.map((chart) => chart.element)),
  );

  const showOverview = (overview: GetOverviewResponse): void => {
    const names = overview.services.map((entry) => entry.service);
    if (!names.includes(service)) {
      service = names.includes(ALL_IN_ONE) ? ALL_IN_ONE : names[0] ?? "";
    }
    replace(serviceSelect, ...names.map((name) => h("option", { attrs: { value: name } }, userText(name))));
    serviceSelect.value = service;
    replace(
      targets,
      ...overview.services.map((entry) =>
        h(
          "li",
          { class: `admin-target ${entry.up ? "up" : "down"}`, attrs: { "data-service": entry.service } },
          h("span", { class: "admin-dot", attrs: { "aria-hidden": "true" } }),
          h("span", { class: "admin-target-name" }, userText(entry.service)),
          h("span", { class: "admin-target-state" }, t(entry.up ? "admin.overview.up" : "admin.overview.down")),
        ),
      ),
    );
    const alerts = overview.firingAlerts;
    firing.classList.toggle("calm", alerts.length === 0);
    replace(
      firing,
      alerts.length === 0
        ? h("p", { class: "admin-all-clear" }, t("admin.overview.allClear"))
        : h(
            "div",
            {},
            h("p", { class: "admin-firing-head", attrs: { role: "alert" } }, t("admin.overview.firing", { count: alerts.length })),
            h("ul", { class: "admin-list" }, ...alerts.map((alert) => alertItem(alert))),
          ),
    );
  };

  let refreshing = false;
  const refresh = async (): Promise<void> => {
    if (refreshing || panel.hidden) {
      return;
    }
    refreshing = true;
    try {
      showOverview(await context.api.monitor.getOverview({}));
      if (!service) {
        return;
      }
      const end = new Date();
      const start = new Date(end.getTime() - range.seconds * 1000);
      const span: [number, number] = [start.getTime() / 1000, end.getTime() / 1000];
      const metrics = [...new Set(CHARTS.flatMap((spec) => spec.series.map((series) => series.metric)))];
      const answers = await Promise.all(
        metrics.map((metric) =>
          context.api.monitor.queryMetric({
            service,
            metric,
            startTime: timestampFromDate(start),
            endTime: timestampFromDate(end),
            step: { seconds: BigInt(range.stepSeconds) },
          }),
        ),
      );
      const byMetric = new Map(metrics.map((metric, index) => [metric, answers[index] ? seriesOf(answers[index]) : new Map<number, number>()]));
      for (const chart of charts) {
        const spec = CHARTS.find((candidate) => chart.element.dataset["chart"] === candidate.id);
        if (spec) {
          chart.draw(aligned(spec.series.map((series) => byMetric.get(series.metric) ?? new Map<number, number>())), span);
        }
      }
      context.updated();
    } catch (error) {
      context.fail(error);
    } finally {
      refreshing = false;
    }
  };
  serviceSelect.addEventListener("change", () => {
    service = serviceSelect.value;
    void refresh();
  });
  rangeSelect.addEventListener("change", () => {
    range = RANGES.find((option) => String(option.seconds) === rangeSelect.value) ?? range;
    void refresh();
  });
  const timer = window.setInterval(() => void refresh(), REFRESH_MS);
  const resize = new ResizeObserver(() => {
    for (const chart of charts) {
      chart.resize();
    }
  });
  resize.observe(panel);
  void refresh();
  return {
    shown: () => void refresh(),
    stop: () => {
      window.clearInterval(timer);
      resize.disconnect();
      for (const chart of charts) {
        chart.destroy();
      }
    },
  };
}
