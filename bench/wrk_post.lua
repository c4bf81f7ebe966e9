-- wrk script: POST one recording as a raw body (docs/API.md, Inputs, shape 3) with a bearer key,
-- and print the count of each answer status at the end ("status 200: 51234").
--   WRK_BODY=call.wav WRK_KEY=sk-... wrk -t2 -c64 -d10s --latency -s bench/wrk_post.lua \
--     http://127.0.0.1:8080/transcribe-and-summarize
-- Env: WRK_BODY (file, required), WRK_KEY (API key; none: no Authorization header),
--      WRK_CONTENT_TYPE (default audio/wav).
local path = assert(os.getenv("WRK_BODY"), "set WRK_BODY to the recording to post")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "audio/wav"
local key = os.getenv("WRK_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      total[code] = (total[code] or 0) + n
    end
  end
  for code, n in pairs(total) do
    io.write(string.format("status %d: %d\n", code, n))
  end
end
