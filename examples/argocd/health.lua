-- Argo CD health check for modelfleet.io Model and FinetuneJob.
-- The same script serves both kinds (argocd-cm.yaml embeds it for each); it reads the kstatus
-- conditions the operator writes and maps them to Healthy, Progressing or Degraded.
local hs = { status = "Progressing", message = "Waiting for the modelfleet operator" }

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil then
  return hs
end

-- A spec change the operator has not seen yet: whatever the conditions say is about the old spec.
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions or {}

if obj.kind == "FinetuneJob" then
  local failed = condition(conditions, "Failed")
  local succeeded = condition(conditions, "Succeeded")
  local running = condition(conditions, "Running")
  if is_true(failed) then
    hs.status = "Degraded"
    hs.message = describe(failed, "Failed")
  elseif is_true(succeeded) then
    hs.status = "Healthy"
    hs.message = describe(succeeded, "Succeeded")
  elseif is_true(condition(conditions, "Stalled")) then
    hs.status = "Degraded"
    hs.message = describe(condition(conditions, "Stalled"), "Stalled")
  else
    hs.status = "Progressing"
    hs.message = describe(running, "Waiting for training to start")
  end
  return hs
end

-- Model (and any kind following kstatus): Stalled wins, then Ready, else still reconciling.
local stalled = condition(conditions, "Stalled")
local ready = condition(conditions, "Ready")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
elseif is_true(ready) then
  hs.status = "Healthy"
  hs.message = describe(condition(conditions, "Serving"), describe(ready, "Ready"))
else
  hs.status = "Progressing"
  hs.message = describe(condition(conditions, "Reconciling"), describe(ready, "Reconciling"))
end
return hs
