-- wrk script: tools/call of an echo tool on one MCP session, a unique JSON-RPC id per request.
-- Environment: SID (Mcp-Session-Id), TOOL (echo | SANDBOX_ECHO), APIKEY (optional x-api-key),
-- PV (protocol version, default 2025-11-25; "none" sends no Mcp-Protocol-Version), AUTH
-- (optional Authorization value). Checks each body carries "Echo: hi".
local counter, tid, threads = 0, 0, {}

function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  bad = 0
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  local pv = os.getenv("PV") or "2025-11-25"
  if pv ~= "none" then wrk.headers["Mcp-Protocol-Version"] = pv end
  local auth = os.getenv("AUTH")
  if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
  local sid = os.getenv("SID")
  if sid and sid ~= "" then wrk.headers["Mcp-Session-Id"] = sid end
  local key = os.getenv("APIKEY")
  if key and key ~= "" then wrk.headers["x-api-key"] = key end
  tool = os.getenv("TOOL") or "echo"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(
    '{"jsonrpc":"2.0","id":"%d-%d","method":"tools/call","params":{"name":"%s","arguments":{"message":"hi"}}}',
    tid, counter, tool))
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, "Echo: hi", 1, true) then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total_bad = 0
  for _, thread in ipairs(threads) do total_bad = total_bad + (thread:get("bad") or 0) end
  io.write(string.format("RESULT rps=%.1f bad=%d errors=%d p50=%.0f p90=%.0f p99=%.0f\n",
    summary.requests / (summary.duration / 1e6), total_bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
