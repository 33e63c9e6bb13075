//! fimsvc as a Windows service: `install`, `start`, `stop` and `uninstall` through the service
//! control manager, and the service's own entry point (`fimsvc service`, what the installed
//! service runs).
//!
//! The service reports START_PENDING while the engine opens its store and makes its start-up
//! scan, RUNNING only once monitoring has started, and on a stop STOP_PENDING while the events
//! already read are journaled, then STOPPED. Its log goes to `fimsvc.log` in the state
//! directory (a service has no console).
use std::{
    ffi::OsString,
    path::PathBuf,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use windows_service::{
    define_windows_service,
    service::{
        ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    },
    service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle},
    service_dispatcher,
    service_manager::{ServiceManager, ServiceManagerAccess},
};

use crate::{run, RunArgs};

const SERVICE_TYPE: ServiceType = ServiceType::OWN_PROCESS;
/// How long `start` and `stop` wait for the service to get there.
const STATE_WAIT: Duration = Duration::from_secs(60);

/// What the installed service runs with (set before the dispatcher calls the service main).
static SERVICE_ARGS: OnceLock<(String, RunArgs)> = OnceLock::new();

/// `fimsvc install`: registers the service (demand start; `sc config` or the Services console
/// makes it automatic) to run this executable with the policy and state directory given.
pub fn install(name: &str, args: &RunArgs) -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .context("opening the service control manager")?;
    let executable = std::env::current_exe().context("finding fimsvc's own path")?;
    let info = ServiceInfo {
        name: OsString::from(name),
        display_name: OsString::from("File integrity monitoring (fimsvc)"),
        service_type: SERVICE_TYPE,
        start_type: ServiceStartType::OnDemand,
        error_control: ServiceErrorControl::Normal,
        executable_path: executable,
        launch_arguments: vec![
            OsString::from("service"),
            OsString::from("--name"),
            OsString::from(name),
            OsString::from("--policy"),
            args.policy.clone().into_os_string(),
            OsString::from("--state-dir"),
            args.state_dir.clone().into_os_string(),
        ]
        .into_iter()
        .chain(args.api.to_args())
        .collect(),
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    manager
        .create_service(&info, ServiceAccess::QUERY_STATUS)
        .with_context(|| format!("installing the service {name}"))?;
    tracing::info!(service = name, "installed");
    Ok(())
}

/// `fimsvc uninstall`: stops the service if it runs, then deletes it.
pub fn uninstall(name: &str) -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("opening the service control manager")?;
    let service = manager
        .open_service(
            name,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .with_context(|| format!("opening the service {name}"))?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        service.stop()?;
        wait_for(&service, ServiceState::Stopped)?;
    }
    service
        .delete()
        .with_context(|| format!("deleting the service {name}"))?;
    tracing::info!(service = name, "uninstalled");
    Ok(())
}

/// `fimsvc start`: starts the service and waits until it reports RUNNING (monitoring began).
pub fn start(name: &str) -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("opening the service control manager")?;
    let service = manager
        .open_service(name, ServiceAccess::QUERY_STATUS | ServiceAccess::START)
        .with_context(|| format!("opening the service {name}"))?;
    service
        .start::<&str>(&[])
        .with_context(|| format!("starting the service {name}"))?;
    wait_for(&service, ServiceState::Running)
}

/// `fimsvc stop`: asks the service to stop and waits until it has (pending work drained).
pub fn stop(name: &str) -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("opening the service control manager")?;
    let service = manager
        .open_service(name, ServiceAccess::QUERY_STATUS | ServiceAccess::STOP)
        .with_context(|| format!("opening the service {name}"))?;
    service
        .stop()
        .with_context(|| format!("stopping the service {name}"))?;
    wait_for(&service, ServiceState::Stopped)
}

fn wait_for(
    service: &windows_service::service::Service,
    state: ServiceState,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STATE_WAIT;
    loop {
        let now = service.query_status()?.current_state;
        if now == state {
            return Ok(());
        }
        if now == ServiceState::Stopped && state == ServiceState::Running {
            bail!("the service stopped instead of starting: see fimsvc.log in its state directory");
        }
        if Instant::now() > deadline {
            bail!(
                "the service is {now:?} after {}s, not {state:?}",
                STATE_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `fimsvc service`: what the service control manager starts. Hands the thread to the
/// dispatcher, which calls [`service_main`].
pub fn dispatch(name: String, args: RunArgs) -> anyhow::Result<()> {
    init_file_log(&args.state_dir);
    let _ = SERVICE_ARGS.set((name.clone(), args));
    service_dispatcher::start(&name, ffi_service_main)
        .context("connecting to the service control manager (is fimsvc started as a service?)")?;
    Ok(())
}

define_windows_service!(ffi_service_main, service_main);

fn service_main(_arguments: Vec<OsString>) {
    let Some((name, args)) = SERVICE_ARGS.get().cloned() else {
        return;
    };
    if let Err(error) = run_service(&name, args) {
        tracing::error!("{error:#}");
    }
}

fn run_service(name: &str, args: RunArgs) -> anyhow::Result<()> {
    let (stop_in, stop) = tokio::sync::oneshot::channel::<()>();
    let stop_in = Mutex::new(Some(stop_in));
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(stop) = stop_in.lock().ok().and_then(|mut stop| stop.take()) {
                let _ = stop.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = service_control_handler::register(name, handler)
        .context("registering the service control handler")?;
    report(&status, ServiceState::StartPending, 0)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let running = status;
    let result = runtime.block_on(run::run(
        args,
        async move {
            let _ = stop.await;
            let _ = report(&running, ServiceState::StopPending, 0);
        },
        || {
            if let Err(error) = report(&status, ServiceState::Running, 0) {
                tracing::error!("cannot report the service as running: {error}");
            }
        },
    ));
    let code = match &result {
        Ok(()) => 0,
        Err(error) => {
            tracing::error!("{error:#}");
            1
        }
    };
    report(&status, ServiceState::Stopped, code)?;
    result
}

fn report(status: &ServiceStatusHandle, state: ServiceState, code: u32) -> anyhow::Result<()> {
    let accepted = match state {
        ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        _ => ServiceControlAccept::empty(),
    };
    status
        .set_service_status(ServiceStatus {
            service_type: SERVICE_TYPE,
            current_state: state,
            controls_accepted: accepted,
            exit_code: ServiceExitCode::Win32(code),
            checkpoint: 0,
            // The start-up scan of a large policy takes a while: ask the manager for patience.
            wait_hint: Duration::from_secs(120),
            process_id: None,
        })
        .context("reporting the service status")
}

/// A service has no console: its log is appended to `fimsvc.log` in the state directory.
fn init_file_log(state_dir: &std::path::Path) {
    let _ = std::fs::create_dir_all(state_dir);
    let path: PathBuf = state_dir.join("fimsvc.log");
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    else {
        return;
    };
    crate::init_logging(Mutex::new(file), false);
}
