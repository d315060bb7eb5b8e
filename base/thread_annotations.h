// Clang thread-safety annotations (leveldb's port/thread_annotations.h, Abseil's names).
// Under clang with -Wthread-safety the compiler checks them: a GUARDED_BY member touched
// without its mutex, a REQUIRES function called without it, a lock taken twice. Other
// compilers see nothing. scripts/thread_safety.sh runs the check over the tree (CI does).
#pragma once

#if defined(__clang__)
#define SNAPFS_TSA(x) __attribute__((x))
#else
#define SNAPFS_TSA(x)
#endif

#define CAPABILITY(x) SNAPFS_TSA(capability(x))
#define SCOPED_CAPABILITY SNAPFS_TSA(scoped_lockable)
#define GUARDED_BY(x) SNAPFS_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) SNAPFS_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) SNAPFS_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) SNAPFS_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) SNAPFS_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) SNAPFS_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) SNAPFS_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) SNAPFS_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) SNAPFS_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) SNAPFS_TSA(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) SNAPFS_TSA(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) SNAPFS_TSA(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) SNAPFS_TSA(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) SNAPFS_TSA(assert_capability(x))
#define RETURN_CAPABILITY(x) SNAPFS_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS SNAPFS_TSA(no_thread_safety_analysis)
