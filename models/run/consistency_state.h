// models/run/consistency_state.h: the options side of resuming `ddpm-distill --method
// consistency` (consistency_run.h "Resume"). The state itself is distill_state.h's folder
// OUT.distill-state with "method": "consistency"; this file says which options define the run
// (saved, compared and taken back on --resume), when a run is already complete, and how a
// resumed run is set up from the state.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "models/run/consistency_run.h"
#include "models/run/distill_state.h"

namespace ddpm::run {

// The options that define a consistency run's result, as state.json records them ("method"
// among them). --checkpoint-every and --device are run controls and may change on resume;
// --log-every may not (the published final loss is the last logged window's mean).
nlohmann::json consistency_options_json(const ConsistencyOptions& o);

// True when `dir` holds a published consistency model (its config.json's "distillation"
// section names the consistency sampler); false for anything else, a damaged config included.
bool is_consistency_folder(const std::string& dir);

// --resume, step 1: with no saved state beside OUT and OUT a published consistency model, the
// result it records (steps, final loss, gaps; its losses are not kept); nullopt otherwise.
std::optional<ConsistencyResult> completed_consistency_run(const ConsistencyOptions& o);

// --resume, step 2: the saved state of OUT, with the defining options of `o` replaced by the
// saved ones. ValueError when there is no state, when it is a progressive run's, or when a
// flag in o.flags_given differs from its saved value (naming the flag and both values);
// IoError for a damaged state. A state without "guided" (saved before --guided existed) is
// an unguided run's.
DistillState resume_consistency_state(ConsistencyOptions& o);

}  // namespace ddpm::run
