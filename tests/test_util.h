// Moved to tests/util/test_fs.h; this forwarder keeps branches that still include the old
// path building until they are merged. Include tests/util/test_fs.h in new code.
#pragma once

#include "tests/util/test_fs.h"
