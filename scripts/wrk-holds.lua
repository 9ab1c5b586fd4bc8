-- Single-seat holds on random seats of one event, each followed by its release, by many
-- users (seat i belongs to user i mod N, so no user nears the per-user seat limit).
-- Environment: BO_EVENT (event id), BO_TOKENS (file, one token per line),
-- BO_SECTIONS / BO_ROWS / BO_SEATS: the demo stadium's label space (sections 101..).

local event = os.getenv("BO_EVENT") or "ev_1"
local sections = tonumber(os.getenv("BO_SECTIONS") or "24")
local rows = tonumber(os.getenv("BO_ROWS") or "25")
local seats = tonumber(os.getenv("BO_SEATS") or "100")
local tokens = {}
local pending = {}

function init(args)
  for line in io.lines(os.getenv("BO_TOKENS")) do
    tokens[#tokens + 1] = line
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

local function token_of(index)
  return tokens[(index % #tokens) + 1]
end

function request()
  local p = table.remove(pending)
  if p then
    return wrk.format("DELETE", "/v1/holds/" .. p.hold, { ["Authorization"] = "Bearer " .. p.token })
  end
  local s, r, n = math.random(sections), math.random(rows), math.random(seats)
  local index = ((s - 1) * rows + (r - 1)) * seats + (n - 1)
  local body = string.format('{"seats":["%d-%d-%d"]}', 100 + s, r, n)
  return wrk.format("POST", "/v1/events/" .. event .. "/holds",
    { ["Authorization"] = "Bearer " .. token_of(index), ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)

  if status == 201 then
    local hold = string.match(body, '"hold_id":"([^"]+)"')
    local index = tonumber(string.match(body, '"index":(%d+)'))
    if hold and index then
      pending[#pending + 1] = { hold = hold, token = token_of(index) }
    end
  end
end
