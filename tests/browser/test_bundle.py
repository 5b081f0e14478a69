"""The page's plotly.js bundle holds every trace type the page draws.

scripts/plotly-bundle.js builds plotly.js with only the trace types listed in
its TRACES (plotly's core adds scatter): a view drawing another type would
show an empty figure and an error in the console. This reads the trace types
the page's modules name (`type: '...'` in static/js, the plotly trace types
among them: plotly's own list, read from its source package when
scripts/deps.sh has installed it, else the names below) and checks that each
is in the bundle, and that scripts/deps.sh, static/index.html and
static/js/plot.js name the same bundle file.
"""
import glob
import os
import re
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLOTLY_LIB = os.path.join(ROOT, ".cache", "plotly-build", "plotly", "node_modules", "plotly.js", "lib")
# plotly.js 2.35's trace types (lib/index.js), for a tree where deps.sh has not run
KNOWN_TRACES = set("""bar barpolar box candlestick carpet choropleth choroplethmap choroplethmapbox cone contour
contourcarpet densitymap densitymapbox funnel funnelarea heatmap heatmapgl histogram histogram2d
histogram2dcontour icicle image indicator isosurface mesh3d ohlc parcats parcoords pie pointcloud sankey scatter
scatter3d scattercarpet scattergeo scattergl scattermap scattermapbox scatterpolar scatterpolargl scattersmith
scatterternary splom streamtube sunburst surface table treemap violin volume waterfall""".split())


def read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def plotly_traces():
    index = os.path.join(PLOTLY_LIB, "index.js")
    if not os.path.isfile(index):
        return KNOWN_TRACES
    with open(index, encoding="utf-8") as f:
        # the traces index.js registers (with the transforms and calendars), and core's scatter
        names = set(re.findall(r"require\('\./([a-z0-9]+)'\)", f.read()))
    return names - {"core", "calendars", "aggregate", "filter", "groupby", "sort"} | {"scatter"}


class TestBundle(unittest.TestCase):
    def test_every_trace_type_the_page_draws_is_bundled(self):
        m = re.search(r"const TRACES = \[([^\]]*)\]", read("scripts", "plotly-bundle.js"))
        self.assertIsNotNone(m, "scripts/plotly-bundle.js has no TRACES list")
        bundled = set(re.findall(r"'([a-z0-9]+)'", m.group(1))) | {"scatter"}
        traces = plotly_traces()
        self.assertTrue({"scatter", "scatter3d", "heatmap"} <= traces, sorted(traces))
        self.assertTrue(bundled <= traces, sorted(bundled - traces))
        used = {}
        for path in sorted(glob.glob(os.path.join(ROOT, "static", "js", "*.js"))):
            with open(path, encoding="utf-8") as f:
                for t in re.findall(r"\btype\s*:\s*['\"]([a-z0-9]+)['\"]", f.read()):
                    if t in traces:
                        used.setdefault(t, os.path.basename(path))
        self.assertTrue({"scatter3d", "heatmap"} <= set(used), used)
        missing = {t: f for t, f in used.items() if t not in bundled}
        self.assertEqual(missing, {}, "trace types drawn by static/js but not in scripts/plotly-bundle.js TRACES")

    def test_one_bundle_name(self):
        m = re.search(r"^plotly_bundle=static(/vendor/plotly-\$plotly_version-[a-z0-9]+\.min\.js)$",
                      read("scripts", "deps.sh"), re.M)
        self.assertIsNotNone(m, "scripts/deps.sh sets no plotly_bundle")
        version = re.search(r"^plotly_version=([0-9.]+)$", read("scripts", "deps.sh"), re.M).group(1)
        url = m.group(1).replace("$plotly_version", version)
        self.assertTrue('<link rel="preload" href="%s" as="script">' % url in read("static", "index.html"),
                        "static/index.html does not preload %s" % url)
        self.assertTrue("const PLOTLY_SRC = '%s';" % url in read("static", "js", "plot.js"),
                        "static/js/plot.js does not load %s" % url)


if __name__ == "__main__":
    unittest.main()
