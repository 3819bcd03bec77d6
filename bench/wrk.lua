-- wrk script for bench/over_http.py.
--   wrk ... -s bench/wrk.lua http://host:port -- MODE PREFIX KEY
-- MODE "admit": POST /v1/sessions with an id unique per request: PREFIX (random, per run), the wrk
--               thread's number and a per-thread counter; expects 201 (a 200 would be a replay).
-- MODE "livez": GET /livez; expects 200.
-- done() prints one line "BENCH_JSON {...}" with the figures, read by the Python side.

local threads = {}
local next_tid = 0

function setup(thread)
   next_tid = next_tid + 1
   thread:set("tid", next_tid)
   table.insert(threads, thread)
end

function init(args)
   mode = args[1] or "livez"
   prefix = args[2] or tostring(math.random(1, 2^31))
   key = args[3] or ""
   counter = 0
   unexpected = 0
   first_unexpected = ""
   if mode == "admit" then
      expected = 201
      headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
   else
      expected = 200
      headers = {}
   end
end

function request()
   if mode == "admit" then
      counter = counter + 1
      local body = string.format('{"id":"%s-%d-%d","agent_id":"bench-agent","direction":"inbound"}',
                                 prefix, tid, counter)
      return wrk.format("POST", "/v1/sessions", headers, body)
   end
   return wrk.format("GET", "/livez", headers)
end

function response(status, hdrs, body)
   if status ~= expected then
      unexpected = unexpected + 1
      if first_unexpected == "" then
         first_unexpected = tostring(status) .. " " .. string.sub(body or "", 1, 200)
      end
   end
end

function done(summary, latency, requests)
   local bad, sample = 0, ""
   for _, t in ipairs(threads) do
      bad = bad + (t:get("unexpected") or 0)
      local s = t:get("first_unexpected")
      if s and s ~= "" and sample == "" then sample = s end
   end
   local e = summary.errors
   sample = string.gsub(string.gsub(sample, '\\', '\\\\'), '"', '\\"')
   sample = string.gsub(sample, '[%c]', ' ')
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
      '"max_us":%d,"mean_us":%.1f,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
      '"status_errors":%d,"timeouts":%d,"unexpected_status":%d,"unexpected_sample":"%s"}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout, bad, sample))
end
