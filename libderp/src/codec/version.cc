#include "derp/version.h"

namespace derp {

const char* version() { return DERP_VERSION_STRING; }

}  // namespace derp
