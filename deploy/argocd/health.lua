-- Argo CD health check for serving.tfops.dev/ModelServer. Install it in the
-- argocd-cm ConfigMap under resource.customizations.health.serving.tfops.dev_ModelServer
-- (deploy/argocd/argocd-cm-patch.yaml does that).
local health = {}
if obj.status == nil or obj.status.conditions == nil then
  health.status = "Progressing"
  health.message = "Waiting for tfops to report the ModelServer's status"
  return health
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  health.status = "Progressing"
  health.message = "tfops has not observed the latest spec yet"
  return health
end
local ready = nil
local degraded = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Degraded" then
    degraded = condition
  end
end
if ready ~= nil and ready.reason == "InvalidSpec" then
  health.status = "Degraded"
  health.message = ready.message
  return health
end
if degraded ~= nil and degraded.status == "True" then
  health.status = "Degraded"
  health.message = degraded.message
  return health
end
if ready ~= nil and ready.status == "True" then
  health.status = "Healthy"
  health.message = ready.message
  return health
end
health.status = "Progressing"
if ready ~= nil and ready.message ~= nil then
  health.message = ready.message
else
  health.message = "Not ready yet"
end
return health
