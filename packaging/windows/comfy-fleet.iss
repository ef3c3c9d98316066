; Inno Setup script for ComfyFleet (Windows). Build the bundle on Windows first:
;   py packaging\build.py --smoke
;   iscc packaging\windows\comfy-fleet.iss     -> build\ComfyFleet-Setup-<version>.exe
; A per-user install (no admin rights), like ComfyUI Desktop; start-at-login is the app's own
; setting (the HKCU Run key), so the installer does not add one.

#define AppName "ComfyFleet"
#define AppVersion "0.1.0"
#define AppExe "comfy-fleet.exe"
#define Root "..\.."

[Setup]
AppId={{6F1C2B7E-3D0A-4C5B-9E21-C0FF1EE7A1B2}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=ComfyFleet
DefaultDirName={localappdata}\Programs\{#AppName}
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
OutputDir={#Root}\build
OutputBaseFilename=ComfyFleet-Setup-{#AppVersion}
SetupIconFile={#Root}\resources\icons\comfy-fleet.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
WizardStyle=modern

[Files]
Source: "{#Root}\build\dist\comfy-fleet\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\{#AppExe}"; Description: "Start {#AppName}"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop what ComfyFleet started before its files go (ignored if nothing runs).
Filename: "{app}\{#AppExe}"; Parameters: "down"; Flags: runhidden; RunOnceId: "StopFleet"

[Registry]
; Remove the start-at-login entry the app may have written.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueName: "ComfyFleet"; Flags: uninsdeletevalue dontcreatekey
