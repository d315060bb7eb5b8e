// Moved to tests/util/flink_sim.h; this forwarder keeps branches that still include the old
// path building until they are merged. Include tests/util/flink_sim.h in new code.
#pragma once

#include "tests/util/flink_sim.h"
