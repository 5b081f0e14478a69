-- wrk script of bench/load.sh. TWD_LOAD_MODE picks the requests:
--   health  GET /health
--   cached  GET /svd?block=5&top=5 (warmed: an answer-cache hit)
--   mix     4 in 5 one of the 12 warmed /svd answers (hits), 1 in 5 a cold
--           /trajectory of a random three-word phrase with PCA (never asked
--           before: a forward pass and the logit lens, computed by a worker)
-- done() prints one RESULT line that bench/load.sh turns into the report.
local mode = os.getenv("TWD_LOAD_MODE") or "health"
local words = {"time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child",
               "world", "school", "state", "family", "student", "group", "country", "problem"}

math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)

request = function()
  if mode == "health" then
    return wrk.format("GET", "/health")
  elseif mode == "cached" then
    return wrk.format("GET", "/svd?block=5&top=5")
  end
  if math.random(5) == 1 then
    return wrk.format("GET", string.format("/trajectory?projection=pca&k=3&text=%s%%20%s%%20%d",
                                           words[math.random(#words)], words[math.random(#words)],
                                           math.random(1, 1000000)))
  end
  return wrk.format("GET", string.format("/svd?block=%d&top=5", math.random(0, 11)))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %s requests=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.1f " ..
                         "socket_errors=%d timeouts=%d non2xx=%d\n",
    mode, summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect + e.read + e.write, e.timeout, e.status))
end
