// Moved to tests/util/mount_fixture.h; this forwarder keeps branches that still include the old
// path building until they are merged. Include tests/util/mount_fixture.h in new code.
#pragma once

#include "tests/util/mount_fixture.h"
